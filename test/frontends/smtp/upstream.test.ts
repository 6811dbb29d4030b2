// Before-queue forwarding: the client's DATA is answered only after the upstream answered. Upstream 250 →
// 250 with its queue id; 4xx/5xx (MAIL, RCPT, end of data) → the same class back; some recipients refused →
// the whole message refused and nothing delivered; upstream down, silent, dying mid-DATA or never answering
// the end of data → 451 4.4.1 and no copy upstream. XFORWARD when offered, the connection pool, STARTTLS,
// implicit TLS and AUTH to the upstream, and no plaintext fallback when the upstream's certificate fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startHarness, message, type Harness, type HarnessOptions } from '../../helpers/smtp-gateway.ts';
import { SmtpClient, plain } from '../../helpers/smtp-client.ts';
import { deadPort, silentServer, type SinkMode } from '../../helpers/smtp-sink.ts';
import { swaks } from '../../helpers/smtp-swaks.ts';
import { loadTlsMaterial, parseReply, queueIdOf, xtext } from '../../../src/frontends/smtp/index.ts';
import { silentLogger } from '../../../src/log/logger.ts';

async function harness(t: { after(fn: () => Promise<void>): void }, o: HarnessOptions = {}): Promise<Harness> {
  const h = await startHarness({ roles: ['smtp'], ...o });
  t.after(() => h.close());
  return h;
}

/** One transaction from `ip`; returns the reply to the end of data and the time it took after the dot. */
async function transact(h: Harness, o: { ip?: string; rcpts?: string[]; subject: string; auth?: boolean }): Promise<{ code: number; raw: string; ms: number }> {
  const c = await SmtpClient.connect({ port: h.port('smtp'), localAddress: o.ip ?? '127.0.0.80', timeoutMs: 15_000 });
  await c.cmd('EHLO upstream.test');
  if (o.auth) assert.equal((await c.cmd(`AUTH PLAIN ${plain('', 'alice', 'alice-secret')}`)).code, 235);
  assert.equal((await c.cmd('MAIL FROM:<a@local.example>')).code, 250);
  for (const r of o.rcpts ?? ['b@local.example']) assert.equal((await c.cmd(`RCPT TO:<${r}>`)).code, 250, r);
  assert.equal((await c.cmd('DATA')).code, 354);
  c.write(message(o.subject) + '.\r\n');
  const t0 = performance.now();
  const r = await c.read();
  const ms = performance.now() - t0;
  await c.quit();
  return { code: r.code, raw: r.raw, ms };
}

test('upstream 250: the client gets 250 only after the upstream answered, with the upstream queue id', async (t) => {
  const h = await harness(t);
  h.sink.mode = { kind: 'accept', delayMs: 400 };
  const r = await transact(h, { subject: 'slow-accept' });
  assert.match(r.raw, /^250 2\.0\.0 Ok: queued as [0-9A-F]{8}$/);
  assert.ok(r.ms >= 380, `answered after the upstream (${r.ms} ms)`);
  const m = h.sink.messages.find((x) => x.data.includes('Subject: slow-accept'))!;
  assert.equal(r.raw, `250 2.0.0 Ok: queued as ${m.queueId}`);
});

const REFUSALS: Array<{ name: string; mode: SinkMode; rcpts?: string[]; reply: RegExp }> = [
  { name: 'upstream 5xx at the end of data', mode: { kind: 'reject-data', code: 554, text: '5.7.1 Message content rejected' }, reply: /^554 5\.7\.1 Message content rejected$/ },
  { name: 'upstream 4xx at the end of data', mode: { kind: 'reject-data', code: 451, text: '4.3.0 Queue file write error' }, reply: /^451 4\.3\.0 Queue file write error$/ },
  { name: 'upstream 5xx at MAIL FROM', mode: { kind: 'reject-mail', code: 553, text: '5.1.8 Sender address domain not found' }, reply: /^553 5\.1\.8 Sender address domain not found$/ },
  { name: 'upstream 4xx at MAIL FROM', mode: { kind: 'reject-mail', code: 451, text: '4.3.0 Try later' }, reply: /^451 4\.3\.0 Try later$/ },
  {
    name: 'upstream refuses every recipient (5xx)',
    mode: { kind: 'reject-rcpt', refuse: (a) => ({ code: 550, text: `5.1.1 <${a}>: Recipient address rejected: User unknown` }) },
    reply: /^550 5\.1\.1 <b@local\.example>: Recipient address rejected: User unknown$/,
  },
  {
    name: 'upstream refuses one of two recipients (5xx): the whole message is refused, nobody gets it',
    mode: { kind: 'reject-rcpt', refuse: (a) => (a.startsWith('unknown') ? { code: 550, text: `5.1.1 <${a}>: User unknown` } : undefined) },
    rcpts: ['b@local.example', 'unknown@local.example'],
    reply: /^550 5\.1\.1 <unknown@local\.example>: User unknown$/,
  },
  {
    name: 'upstream defers one recipient and refuses another: the temporary reply wins',
    mode: { kind: 'reject-rcpt', refuse: (a) => (a.startsWith('full') ? { code: 452, text: `4.2.2 <${a}>: Mailbox full` } : a.startsWith('unknown') ? { code: 550, text: `5.1.1 <${a}>: User unknown` } : undefined) },
    rcpts: ['b@local.example', 'unknown@local.example', 'full@local.example'],
    reply: /^452 4\.2\.2 <full@local\.example>: Mailbox full$/,
  },
];
for (const k of REFUSALS) {
  test(`${k.name} → the same code class back to the client, nothing delivered`, async (t) => {
    const h = await harness(t);
    h.sink.mode = k.mode;
    const subject = k.name.replace(/\W+/g, '-');
    const r = await transact(h, { subject, ...(k.rcpts ? { rcpts: k.rcpts } : {}) });
    assert.match(r.raw, k.reply);
    assert.equal(h.sink.messages.length, 0);
    // the pool is healthy afterwards: the next message goes through
    h.sink.mode = { kind: 'accept' };
    const ok = await transact(h, { subject: `${subject}-then-ok` });
    assert.equal(ok.code, 250, ok.raw);
    assert.equal(h.sink.messages.length, 1);
    await h.waitLog(new RegExp(`status=(bounced|deferred) \\(${r.raw.slice(0, 3)} `));
  });
}

test('upstream down (connection refused) → 451 4.4.1, logged as deferred', async (t) => {
  const h = await harness(t, { relayhost: `127.0.0.1:${await deadPort()}` });
  const r = await transact(h, { subject: 'down', ip: '127.0.0.81' });
  assert.equal(r.raw, '451 4.4.1 Error: upstream mail server unavailable, try again later');
  await h.waitLog(/^[0-9A-F]{10}: client=unknown\[127\.0\.0\.81\], .*status=deferred \(451 4\.4\.1 .*connect: /);
});

test('upstream that accepts TCP but never greets → 451 4.4.1 after relayhost_timeout', async (t) => {
  const silent = await silentServer();
  t.after(() => silent.close());
  const h = await harness(t, { relayhost: `127.0.0.1:${silent.port}`, smtp: 'relayhost_timeout = 1' });
  const r = await transact(h, { subject: 'silent' });
  assert.match(r.raw, /^451 4\.4\.1 /);
  assert.ok(r.ms < 4000, `bounded by the timeout (${r.ms} ms)`);
});

test('upstream dies mid-DATA → 451 4.4.1, no copy upstream, and the next message goes through', async (t) => {
  const h = await harness(t);
  h.sink.mode = { kind: 'die-mid-data' };
  const r = await transact(h, { subject: 'die' });
  assert.match(r.raw, /^451 4\.4\.1 /);
  assert.equal(h.sink.messages.length, 0);
  h.sink.mode = { kind: 'accept' };
  assert.equal((await transact(h, { subject: 'after-die' })).code, 250);
});

test('the client drops the connection mid-DATA: the upstream never sees the end of the message', async (t) => {
  const h = await harness(t);
  const c = await SmtpClient.connect({ port: h.port('smtp'), localAddress: '127.0.0.85' });
  await c.cmd('EHLO drop.test');
  await c.cmd('MAIL FROM:<a@local.example>');
  await c.cmd('RCPT TO:<b@local.example>');
  await c.cmd('DATA');
  c.write('Subject: dropped\r\n\r\n' + 'body line\r\n'.repeat(2000));
  await h.waitLog(/connect from unknown\[127\.0\.0\.85\]/);
  for (let i = 0; i < 100 && h.sink.connections === 0; i++) await new Promise((r) => setTimeout(r, 10));
  c.destroy();
  await h.waitLog(/^[0-9A-F]{10}: client=unknown\[127\.0\.0\.85\], status=aborted \(lost connection after DATA, \d+ bytes received\)$/);
  assert.equal(h.sink.messages.length, 0);
  assert.equal((await transact(h, { subject: 'after-drop' })).code, 250);
});

test('upstream never answers the end of data → 451 4.4.1 after relayhost_timeout (the client never sees 250)', async (t) => {
  const h = await harness(t, { smtp: 'relayhost_timeout = 1' });
  h.sink.mode = { kind: 'stall-data' };
  const r = await transact(h, { subject: 'stall' });
  assert.match(r.raw, /^451 4\.4\.1 /);
});

test('XFORWARD: the real client name, address, port, protocol and HELO reach an upstream that offers it', async (t) => {
  const h = await harness(t, { sink: { xforward: true } });
  const r = await transact(h, { subject: 'xforward', ip: '127.0.0.82' });
  assert.equal(r.code, 250);
  const x = h.sink.messages[0]!.xforward;
  assert.equal(x.ADDR, '127.0.0.82');
  assert.ok(!x.NAME, 'NAME=[UNAVAILABLE]: no verified name');
  assert.equal(x.PROTO, 'ESMTP');
  assert.equal(x.HELO, 'upstream.test');
  assert.equal(typeof x.PORT, 'number');
  // per transaction: a second message on a reused upstream connection carries its own client
  assert.equal((await transact(h, { subject: 'xforward-2', ip: '127.0.0.83' })).code, 250);
  assert.equal(h.sink.messages[1]!.xforward.ADDR, '127.0.0.83');
  assert.equal(h.sink.connections, 1, 'one reused upstream connection');
});

test('XFORWARD is not sent to an upstream that does not offer it, nor when smtp.xforward = false', async (t) => {
  const plainSink = await harness(t);
  assert.equal((await transact(plainSink, { subject: 'no-xf' })).code, 250);
  assert.deepEqual(plainSink.sink.messages[0]!.xforward, {});
  assert.ok(!plainSink.logs.some((l) => /XFORWARD/.test(l)));
  const off = await harness(t, { sink: { xforward: true }, smtp: 'xforward = false' });
  assert.equal((await transact(off, { subject: 'xf-off' })).code, 250);
  assert.deepEqual(off.sink.messages[0]!.xforward, {});
});

test('the pool reuses connections: 6 messages in a row over one upstream connection; 12 at once all arrive', async (t) => {
  const h = await harness(t, { smtp: 'relayhost_pool = 2' });
  for (let i = 0; i < 6; i++) assert.equal((await transact(h, { subject: `seq-${i}` })).code, 250);
  assert.equal(h.sink.connections, 1);
  const all = await Promise.all(Array.from({ length: 12 }, (_, i) => transact(h, { subject: `par-${i}`, ip: `127.0.2.${i + 1}` })));
  assert.ok(all.every((r) => r.code === 250), all.map((r) => r.raw).join('\n'));
  assert.equal(h.sink.messages.length, 18);
});

async function sinkTls(t: { after(fn: () => Promise<void>): void }): Promise<{ key: Buffer; cert: Buffer }> {
  const dir = await mkdtemp(join(tmpdir(), 'rg-sink-tls-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const m = await loadTlsMaterial({ dataDir: dir, hostname: 'sink.test' }, silentLogger());
  return { key: m.key, cert: m.cert };
}

for (const mode of ['starttls', 'tls'] as const) {
  test(`relayhost_tls = "${mode}" with relayhost_auth: the message arrives encrypted and authenticated`, async (t) => {
    const { key, cert } = await sinkTls(t);
    const h = await harness(t, {
      sink: { tls: mode, key, cert, auth: { user: 'relaygate', pass: 'upstream-secret' } },
      smtp: `relayhost_tls = "${mode}"\nrelayhost_auth = { username = "relaygate", password = "upstream-secret" }`,
      upstreamTls: { ca: cert, checkServerIdentity: () => undefined },
    });
    assert.equal((await transact(h, { subject: `enc-${mode}` })).code, 250);
    const m = h.sink.messages[0]!;
    assert.equal(m.secure, true);
    assert.equal(m.user, 'relaygate');
    assert.ok(!h.logs.some((l) => l.includes('upstream-secret')), 'the upstream password is never logged');
  });
}

test('an upstream certificate that does not verify → 451 4.4.1, never a plaintext fallback', async (t) => {
  const { key, cert } = await sinkTls(t);
  const h = await harness(t, { sink: { tls: 'starttls', key, cert }, smtp: 'relayhost_tls = "starttls"' });
  const r = await transact(h, { subject: 'bad-cert' });
  assert.match(r.raw, /^451 4\.4\.1 /);
  assert.equal(h.sink.messages.length, 0);
});

test('swaks through the gateway to a refusing upstream sees the upstream refusal at DATA', async (t) => {
  const h = await harness(t);
  h.sink.mode = { kind: 'reject-data', code: 552, text: '5.2.2 Mailbox full' };
  const r = await swaks({ port: h.port('smtp'), localAddress: '127.0.0.84', from: 'a@local.example', to: 'b@local.example' });
  assert.notEqual(r.code, 0);
  assert.match(r.transcript, /<\*\*\s+552 5\.2\.2 Mailbox full/);
});

test('parseReply / queueIdOf / xtext', () => {
  assert.deepEqual(parseReply('550 5.1.1 <x@y>: User unknown'), { code: 550, dsn: '5.1.1', text: '<x@y>: User unknown' });
  assert.deepEqual(parseReply('550-5.7.1 first\n550 5.7.1 second'), { code: 550, dsn: '5.7.1', text: 'first second' });
  assert.deepEqual(parseReply('452 4.2.2 full'), { code: 452, dsn: '4.2.2', text: 'full' });
  assert.deepEqual(parseReply('554 4.7.1 wrong class'), { code: 554, dsn: '5.7.1', text: 'wrong class' });
  assert.deepEqual(parseReply('550 no dsn'), { code: 550, dsn: '5.0.0', text: 'no dsn' });
  assert.deepEqual(parseReply('250 not an error'), { code: 451, dsn: '4.0.0', text: 'not an error' });
  assert.equal(parseReply('550 5.0.0 evil\r\ninjected').text, 'evil injected');
  assert.equal(queueIdOf('250 2.0.0 Ok: queued as 4F3A2B1C'), '4F3A2B1C');
  assert.equal(queueIdOf('250 2.0.0 Ok'), undefined);
  assert.equal(xtext('a b+c=d\r\n'), 'a+20b+2Bc+3Dd+0D+0A');
});
