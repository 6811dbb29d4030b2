// Who may relay through the gateway: the relay matrix (client in mynetworks / SASL-authenticated /
// holding a grant / holding an expired grant / nobody × local and remote recipient) with swaks as the real
// client, the submission role's "AUTH or a grant" rule, the classic open-relay address tricks (which must
// never relay for an unauthorized client), and sender-login checks for SASL and POP-before-SMTP users.
// Real engine, real LMDB access map, real passwd-file backend; the upstream is the recording sink.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHarness, grant, message, MYNETWORKS_CLIENT, type Harness } from '../../helpers/smtp-gateway.ts';
import { SmtpClient, plain } from '../../helpers/smtp-client.ts';
import { requireSwaks, swaks } from '../../helpers/smtp-swaks.ts';

let h: Harness;

const SASL_CLIENT = '127.0.0.11';
const GRANT_CLIENT = '127.0.0.12';
const EXPIRED_CLIENT = '127.0.0.13';
const NOBODY = '127.0.0.14';

before(async () => {
  await requireSwaks();
  h = await startHarness();
  await grant(h, GRANT_CLIENT, 'bob');
  await grant(h, EXPIRED_CLIENT, 'carol', 1);
  h.clock.advance(2000); // carol's 1-second grant is now expired (expired = absent, before any sweep)
});
after(async () => {
  await h?.close();
});

type Who = 'mynetworks' | 'sasl' | 'grant' | 'expired grant' | 'nobody';
const CLIENTS: Record<Who, string> = { mynetworks: MYNETWORKS_CLIENT, sasl: SASL_CLIENT, grant: GRANT_CLIENT, 'expired grant': EXPIRED_CLIENT, nobody: NOBODY };
const AUTH_ARGS = ['--auth', 'PLAIN', '--auth-user', 'alice', '--auth-password', 'alice-secret'];

const MATRIX: Array<{ who: Who; rcpt: 'local' | 'remote'; relayed: boolean }> = [
  { who: 'mynetworks', rcpt: 'local', relayed: true },
  { who: 'mynetworks', rcpt: 'remote', relayed: true },
  { who: 'sasl', rcpt: 'local', relayed: true },
  { who: 'sasl', rcpt: 'remote', relayed: true },
  { who: 'grant', rcpt: 'local', relayed: true },
  { who: 'grant', rcpt: 'remote', relayed: true },
  { who: 'expired grant', rcpt: 'local', relayed: true },
  { who: 'expired grant', rcpt: 'remote', relayed: false },
  { who: 'nobody', rcpt: 'local', relayed: true },
  { who: 'nobody', rcpt: 'remote', relayed: false },
];

for (const row of MATRIX) {
  test(`relay matrix (port 25 role, swaks): ${row.who} → ${row.rcpt} recipient: ${row.relayed ? 'accepted and forwarded' : 'Relay access denied'}`, async () => {
    const subject = `matrix-${row.who.replace(' ', '-')}-${row.rcpt}`;
    const to = row.rcpt === 'local' ? `${subject}@local.example` : `${subject}@remote.example`;
    const r = await swaks({
      port: h.port('smtp'),
      localAddress: CLIENTS[row.who],
      from: 'sender@local.example',
      to,
      args: [...(row.who === 'sasl' ? AUTH_ARGS : []), '--h-Subject', subject],
    });
    if (row.relayed) {
      assert.equal(r.code, 0, r.transcript + r.stderr);
      assert.match(r.transcript, /<-\s+250 2\.0\.0 Ok: queued as [0-9A-F]+/);
      const m = h.sink.messages.find((x) => x.to.includes(to));
      assert.ok(m, `the sink has the message for ${to}`);
      assert.equal(m.from, 'sender@local.example');
      assert.match(m.data.toString(), new RegExp(`Subject: ${subject}`));
      // RFC 3848: ESMTPA only for a real SASL login, never for a grant or mynetworks
      assert.match(m.data.toString(), row.who === 'sasl' ? / with ESMTPA id / : / with ESMTP id /);
    } else {
      assert.notEqual(r.code, 0);
      assert.match(r.transcript, /<\*\*\s+554 5\.7\.1 <[^>]+>: Relay access denied/);
      assert.equal(h.sink.messages.find((x) => x.to.includes(to)), undefined, 'nothing reached the upstream');
      await h.waitLog(new RegExp(`NOQUEUE: reject: RCPT from unknown\\[${CLIENTS[row.who].replace(/\./g, '\\.')}\\]: 554 5\\.7\\.1 <${to}>: Relay access denied`));
    }
  });
}

test('the forwarded message log line names the client, the SASL user or the grant, and the upstream queue id', async () => {
  const line = await h.waitLog(/^[0-9A-F]{10}: client=unknown\[127\.0\.0\.12\], grant_source=test:dovecot, grant_user=bob, .*status=sent \(250 2\.0\.0 Ok: queued as [0-9A-F]+\)$/);
  assert.match(line, /relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+/);
  await h.waitLog(/^[0-9A-F]{10}: client=unknown\[127\.0\.0\.11\], sasl_method=PLAIN, sasl_username=alice, from=<sender@local\.example>, nrcpt=1, .*status=sent/);
  await h.waitLog(/^client=unknown\[127\.0\.0\.11\], sasl_method=PLAIN, sasl_username=alice$/);
  await h.waitLog(/^connect from unknown\[127\.0\.0\.14\]$/);
  await h.waitLog(/^disconnect from unknown\[127\.0\.0\.14\] ehlo=1 mail=1 rcpt=0\/1 .*commands=\d+\/\d+$/);
});

const SUBMISSION: Array<{ who: Who; ok: boolean }> = [
  { who: 'sasl', ok: true },
  { who: 'grant', ok: true },
  { who: 'expired grant', ok: false },
  { who: 'mynetworks', ok: false },
  { who: 'nobody', ok: false },
];
for (const row of SUBMISSION) {
  test(`submission role: ${row.who} ${row.ok ? 'may send' : 'may not send anything, not even to a local recipient'}`, async () => {
    const subject = `submission-${row.who.replace(' ', '-')}`;
    const to = `${subject}@local.example`;
    const r = await swaks({
      port: h.port('submission'),
      localAddress: CLIENTS[row.who],
      from: 'sender@local.example',
      to,
      args: [...(row.who === 'sasl' ? [...AUTH_ARGS, '--tls'] : []), '--h-Subject', subject],
    });
    if (row.ok) {
      assert.equal(r.code, 0, r.transcript + r.stderr);
      assert.ok(h.sink.messages.find((x) => x.to.includes(to)));
    } else {
      assert.notEqual(r.code, 0);
      assert.match(r.transcript, /<\*\*\s+554 5\.7\.1 <sender@local\.example>: Sender address rejected: Access denied/);
      assert.equal(h.sink.messages.find((x) => x.to.includes(to)), undefined);
      const ip = CLIENTS[row.who].replace(/\./g, '\\.');
      await h.waitLog(new RegExp(`^NOQUEUE: reject: MAIL from unknown\\[${ip}\\]: 554 5\\.7\\.1 <sender@local\\.example>: Sender address rejected: Access denied; from=<sender@local\\.example> proto=ESMTP helo=<client\\.test>$`));
    }
  });
}

/** Addresses that must never be relayed for an unauthorized client (Postfix's allow_untrusted_routing = no). */
const TRICKS = [
  'bob%remote.example@local.example', // percent hack
  'BOB%REMOTE.EXAMPLE@LOCAL.EXAMPLE',
  'remote.example!bob@local.example', // bang path
  '@local.example:bob@remote.example', // RFC 821 source route (smtp-server drops the route)
  '@local.example,@other.example:bob@remote.example',
  '"bob@remote.example"@local.example', // quoted local part with @
  '"bob%remote.example"@local.example',
  '"bob!remote.example"@local.example',
  'bob@remote.example@local.example',
  'bob@[192.0.2.1]', // IP literal
  'bob@[127.0.0.1]',
  'bob@[IPv6:::1]',
  'bob@remote.example.', // trailing dot
  'bob@local.example.remote.example',
  'BOB@REMOTE.EXAMPLE', // upper case
  'bob@Remote.Example',
  'bob@local.example%remote.example',
  'bob@remote.example (comment)',
  'bob',
];

test('open-relay address tricks: an unauthorized client never gets one accepted (raw client)', async () => {
  const c = await SmtpClient.connect({ port: h.port('smtp'), localAddress: NOBODY });
  assert.equal((await c.cmd('EHLO trick.test')).code, 250);
  assert.equal((await c.cmd('MAIL FROM:<spammer@remote.example>')).code, 250);
  for (const t of TRICKS) {
    const r = await c.cmd(`RCPT TO:<${t}>`);
    assert.ok(r.code >= 500, `RCPT TO:<${t}> must be refused, got ${r.raw}`);
  }
  const d = await c.cmd('DATA');
  assert.equal(d.code, 503, 'no recipient was accepted');
  await c.quit();
  assert.equal(h.sink.messages.filter((m) => m.from === 'spammer@remote.example').length, 0);
});

test('open-relay address tricks through swaks: refused, nothing forwarded', async () => {
  for (const t of ['bob%remote.example@local.example', 'remote.example!bob@local.example', '@local.example:bob@remote.example', 'bob@[192.0.2.1]', 'BOB@REMOTE.EXAMPLE']) {
    const r = await swaks({ port: h.port('smtp'), localAddress: NOBODY, from: 'spammer2@remote.example', to: t });
    assert.notEqual(r.code, 0, `${t}: ${r.transcript}`);
    assert.match(r.transcript, /<\*\*\s+5\d\d /);
  }
  assert.equal(h.sink.messages.filter((m) => m.from === 'spammer2@remote.example').length, 0);
});

test('local recipients in upper case and the bare postmaster are accepted from anyone (and only those)', async () => {
  const c = await SmtpClient.connect({ port: h.port('smtp'), localAddress: NOBODY });
  await c.cmd('EHLO local.test');
  assert.equal((await c.cmd('MAIL FROM:<>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<Postmaster@LOCAL.EXAMPLE>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<postmaster>')).code, 250);
  assert.equal((await c.cmd('DATA')).code, 354);
  c.write(message('upper-local'));
  c.write('.\r\n');
  const r = await c.read();
  assert.equal(r.code, 250, r.raw);
  await c.quit();
  const m = h.sink.messages.find((x) => x.data.includes('Subject: upper-local'));
  assert.ok(m);
  assert.deepEqual(m.to, ['Postmaster@LOCAL.EXAMPLE', 'postmaster']);
  assert.equal(m.from, '');
});

test('AUTH does not carry over a relay permission to a later client, and RSET keeps the SASL login', async () => {
  const c = await SmtpClient.connect({ port: h.port('smtp'), localAddress: NOBODY });
  await c.cmd('EHLO x.test');
  assert.equal((await c.cmd(`AUTH PLAIN ${plain('', 'alice', 'alice-secret')}`)).code, 235);
  await c.cmd('MAIL FROM:<alice@local.example>');
  assert.equal((await c.cmd('RCPT TO:<x@remote.example>')).code, 250);
  assert.equal((await c.cmd('RSET')).code, 250);
  await c.cmd('MAIL FROM:<alice@local.example>');
  assert.equal((await c.cmd('RCPT TO:<y@remote.example>')).code, 250, 'RSET ends the transaction, not the login');
  await c.quit();
  const d = await SmtpClient.connect({ port: h.port('smtp'), localAddress: NOBODY });
  await d.cmd('EHLO x.test');
  await d.cmd('MAIL FROM:<alice@local.example>');
  assert.equal((await d.cmd('RCPT TO:<x@remote.example>')).code, 554, 'a new connection from the same IP is not authenticated');
  await d.quit();
});

test('sender login mismatch: SASL and POP-before-SMTP users are held to their own addresses', async (t) => {
  const s = await startHarness({
    roles: ['smtp'],
    top: ['sender_restrictions = ["reject_sender_login_mismatch"]', 'sender_login_maps = ["inline:{ alice@example.com=alice }"]'].join('\n'),
  });
  t.after(() => s.close());
  await grant(s, '127.0.0.31', 'alice');
  await grant(s, '127.0.0.32', 'bob');
  const cases: Array<{ name: string; ip: string; auth?: [string, string]; code: number; text?: RegExp }> = [
    { name: 'SASL alice as alice@example.com', ip: '127.0.0.30', auth: ['alice', 'alice-secret'], code: 250 },
    { name: 'SASL bob as alice@example.com', ip: '127.0.0.30', auth: ['bob', 'bob-secret'], code: 553, text: /^553 5\.7\.1 <alice@example\.com>: Sender address rejected: not owned by user bob$/ },
    { name: 'POP-before-SMTP alice as alice@example.com', ip: '127.0.0.31', code: 250 },
    { name: 'POP-before-SMTP bob as alice@example.com', ip: '127.0.0.32', code: 553, text: /^553 5\.7\.1 <alice@example\.com>: Sender address rejected: not owned by user bob$/ },
    { name: 'nobody as alice@example.com', ip: '127.0.0.33', code: 553, text: /^553 5\.7\.1 <alice@example\.com>: Sender address rejected: not logged in$/ },
    { name: 'nobody as an address nobody owns', ip: '127.0.0.33', code: 250 },
  ];
  for (const k of cases) {
    const c = await SmtpClient.connect({ port: s.port('smtp'), localAddress: k.ip });
    await c.cmd('EHLO login.test');
    if (k.auth) assert.equal((await c.cmd(`AUTH PLAIN ${plain('', k.auth[0], k.auth[1])}`)).code, 235);
    const sender = k.name.endsWith('nobody owns') ? 'someone@remote.example' : 'alice@example.com';
    const r = await c.cmd(`MAIL FROM:<${sender}>`);
    assert.equal(r.code, k.code, `${k.name}: ${r.raw}`);
    if (k.text) assert.match(r.raw, k.text, k.name);
    await c.quit();
  }
  // the same through swaks, for the POP-before-SMTP user who is not the owner
  const r = await swaks({ port: s.port('smtp'), localAddress: '127.0.0.32', from: 'alice@example.com', to: 'x@local.example' });
  assert.match(r.transcript, /<\*\*\s+553 5\.7\.1 <alice@example\.com>: Sender address rejected: not owned by user bob/);
});

test('submissions (implicit TLS, port 465 style) has the submission rule too: no AUTH and no grant, no MAIL', async () => {
  const c = await SmtpClient.connect({ port: h.port('submissions'), localAddress: NOBODY, tls: true });
  await c.cmd('EHLO x.test');
  const r = await c.cmd('MAIL FROM:<a@local.example>');
  assert.equal(r.raw, '554 5.7.1 <a@local.example>: Sender address rejected: Access denied');
  assert.equal((await c.cmd(`AUTH PLAIN ${plain('', 'alice', 'alice-secret')}`)).code, 235);
  assert.equal((await c.cmd('MAIL FROM:<alice@local.example>')).code, 250);
  await c.quit();
});

test('IPv6: a listener on [::1], the client ::1 is normalized, judged and logged like any other', async (t) => {
  const s = await startHarness({ roles: ['smtp'], listenAddress: '[::1]:0' });
  t.after(() => s.close());
  const c = await SmtpClient.connect({ host: '::1', port: s.port('smtp'), localAddress: '::1' });
  await c.cmd('EHLO v6.test');
  await c.cmd('MAIL FROM:<a@remote.example>');
  assert.equal((await c.cmd('RCPT TO:<x@remote.example>')).code, 554);
  assert.equal((await c.cmd('RCPT TO:<x@local.example>')).code, 250);
  await c.cmd('DATA');
  c.write(message('ipv6') + '.\r\n');
  assert.equal((await c.read()).code, 250);
  await c.quit();
  assert.match(s.sink.messages[0]!.data.toString(), /^Received: from v6\.test \(unknown \[IPv6:::1\]\)\r\n/);
  await s.waitLog(/^connect from unknown\[::1\]$/);
  await s.waitLog(/^NOQUEUE: reject: RCPT from unknown\[::1\]: 554 5\.7\.1 <x@remote\.example>: Relay access denied;/);
});

test('IDN: an xn-- recipient domain is judged and forwarded in the A-label form the client sent (smtp-server would turn it into Unicode)', async (t) => {
  const s = await startHarness({ roles: ['smtp'], top: 'relay_domains = ["xn--mnchen-3ya.example"]' });
  t.after(() => s.close());
  const c = await SmtpClient.connect({ port: s.port('smtp'), localAddress: NOBODY });
  await c.cmd('EHLO idn.test');
  await c.cmd('MAIL FROM:<a@xn--bcher-kva.example>');
  assert.equal((await c.cmd('RCPT TO:<bob@xn--mnchen-3ya.example>')).code, 250, 'relay_domains match on the A-label');
  assert.equal((await c.cmd('RCPT TO:<bob@xn--zrich-kva.example>')).code, 554, 'other IDN domains are still remote');
  await c.cmd('DATA');
  c.write(message('idn') + '.\r\n');
  assert.equal((await c.read()).code, 250);
  await c.quit();
  // (the sink is smtp-server too and shows what it received in Unicode, so the wire form is checked in the
  // gateway's own header and log line)
  assert.deepEqual(s.sink.messages[0]!.to, ['bob@münchen.example']);
  assert.match(s.sink.messages[0]!.data.toString(), /\tfor <bob@xn--mnchen-3ya\.example>; /);
  await s.waitLog(/: client=unknown\[127\.0\.0\.14\], from=<a@xn--bcher-kva\.example>, nrcpt=1, .*status=sent/);
});
