// Connection-level behaviour: the per-IP connection limit and the global client limit (421 4.7.0 at connect),
// the configurable greeting delay (smtp-server's hard-coded 100 ms replaced; early talkers still caught when
// a delay is set), the idle timeout, and nodemailer as a second real client (SASL over STARTTLS on
// submission, distinct source addresses through `localAddress`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { startHarness, grant, message, type Harness, type HarnessOptions } from '../../helpers/smtp-gateway.ts';
import { SmtpClient } from '../../helpers/smtp-client.ts';

async function harness(t: { after(fn: () => Promise<void>): void }, o: HarnessOptions = {}): Promise<Harness> {
  const h = await startHarness({ roles: ['smtp'], ...o });
  t.after(() => h.close());
  return h;
}

test('client_connection_limit: the third concurrent connection from one IP gets 421 4.7.0; other IPs are not affected', async (t) => {
  const h = await harness(t, { smtp: 'client_connection_limit = 2' });
  const a = await SmtpClient.connect({ port: h.port('smtp'), localAddress: '127.0.0.100' });
  const b = await SmtpClient.connect({ port: h.port('smtp'), localAddress: '127.0.0.100' });
  await assert.rejects(SmtpClient.connect({ port: h.port('smtp'), localAddress: '127.0.0.100' }), /unexpected greeting: 421 4\.7\.0 gw\.test Error: too many connections from 127\.0\.0\.100/);
  const other = await SmtpClient.connect({ port: h.port('smtp'), localAddress: '127.0.0.101' });
  await other.quit();
  await a.quit();
  await new Promise((r) => setTimeout(r, 100));
  const again = await SmtpClient.connect({ port: h.port('smtp'), localAddress: '127.0.0.100' });
  assert.equal((await again.cmd('NOOP')).code, 250, 'a slot is free again after a disconnect');
  await again.quit();
  await b.quit();
  await h.waitLog(/^warning: Connection concurrency limit exceeded: 3 from unknown\[127\.0\.0\.100\] for service smtp$/);
});

test('client_limit counts clients over all listeners: the next one gets 421 4.7.0', async (t) => {
  const h = await harness(t, { roles: ['smtp', 'submission'], smtp: 'client_limit = 2' });
  const a = await SmtpClient.connect({ port: h.port('smtp'), localAddress: '127.0.0.102' });
  const b = await SmtpClient.connect({ port: h.port('submission'), localAddress: '127.0.0.103' });
  await assert.rejects(SmtpClient.connect({ port: h.port('submission'), localAddress: '127.0.0.104' }), /unexpected greeting: 421 4\.7\.0 /);
  await a.quit();
  await b.quit();
});

/** ms from TCP connect to the greeting */
async function greetingMs(port: number, ip: string): Promise<number> {
  const t0 = performance.now();
  const c = await SmtpClient.connect({ port, localAddress: ip });
  const ms = performance.now() - t0;
  await c.quit();
  return ms;
}

test('greeting_delay = 0 (default): the greeting is not held for smtp-server\'s fixed 100 ms', async (t) => {
  const h = await harness(t);
  const times: number[] = [];
  for (let i = 0; i < 5; i++) times.push(await greetingMs(h.port('smtp'), '127.0.0.105'));
  assert.ok(Math.min(...times) < 60, `greeting times ${times.map((x) => x.toFixed(1)).join(', ')} ms`);
});

test('greeting_delay = 1s: the greeting waits, and a client that talks first is cut off (421) and never gets to send', async (t) => {
  const h = await harness(t, { smtp: 'greeting_delay = 1' });
  const ms = await greetingMs(h.port('smtp'), '127.0.0.106');
  assert.ok(ms >= 950 && ms < 3000, `${ms} ms`);
  const s = net.connect({ host: '127.0.0.1', port: h.port('smtp'), localAddress: '127.0.0.107' });
  let got = '';
  s.setEncoding('latin1');
  s.on('data', (d: string) => (got += d));
  await new Promise<void>((r) => s.once('connect', () => r()));
  s.write('EHLO early.test\r\nMAIL FROM:<a@remote.example>\r\n');
  const closed = await new Promise<boolean>((r) => {
    const timer = setTimeout(() => r(false), 4000);
    s.once('close', () => {
      clearTimeout(timer);
      r(true);
    });
  });
  assert.ok(closed, 'the early talker is disconnected');
  assert.match(got, /^421 .*You talk too soon/m);
  assert.doesNotMatch(got, /^250/m);
});

test('idle_timeout: an idle client is told 421 and disconnected', async (t) => {
  const h = await harness(t, { smtp: 'idle_timeout = 1' });
  const c = await SmtpClient.connect({ port: h.port('smtp'), localAddress: '127.0.0.108' });
  const r = await c.read(3000);
  assert.match(r.raw, /^421 /);
  assert.ok(await c.waitClosed(3000));
});

function nodemailerSend(o: { port: number; localAddress: string; auth?: { user: string; pass: string }; from: string; to: string[]; raw: string }): Promise<{ response: string }> {
  return new Promise((resolve, reject) => {
    const c = new SMTPConnection({ host: '127.0.0.1', port: o.port, localAddress: o.localAddress, name: 'nodemailer.test', requireTLS: o.auth !== undefined, tls: { rejectUnauthorized: false }, connectionTimeout: 5000, greetingTimeout: 5000, socketTimeout: 5000, logger: false });
    c.on('error', (err: Error) => reject(err));
    c.connect(() => {
      const go = () =>
        c.send({ from: o.from, to: o.to }, o.raw, (err, info) => {
          c.quit();
          if (err) reject(err);
          else resolve({ response: info.response });
        });
      if (o.auth) c.login({ user: o.auth.user, pass: o.auth.pass }, (err) => (err ? reject(err) : go()));
      else go();
    });
  });
}

test('nodemailer as the client: SASL over STARTTLS on submission relays; a grant relays; a stranger does not', async (t) => {
  const h = await harness(t, { roles: ['submission', 'smtp'], loopbackIsLocal: false });
  const sasl = await nodemailerSend({ port: h.port('submission'), localAddress: '127.0.0.109', auth: { user: 'bob', pass: 'bob-secret' }, from: 'bob@local.example', to: ['nm1@remote.example'], raw: message('nodemailer-sasl') });
  assert.match(sasl.response, /^250 2\.0\.0 Ok: queued as /);
  await grant(h, '127.0.0.110', 'carol');
  const g = await nodemailerSend({ port: h.port('smtp'), localAddress: '127.0.0.110', from: 'carol@local.example', to: ['nm2@remote.example'], raw: message('nodemailer-grant') });
  assert.match(g.response, /^250 /);
  await assert.rejects(
    nodemailerSend({ port: h.port('smtp'), localAddress: '127.0.0.111', from: 'eve@remote.example', to: ['nm3@remote.example'], raw: message('nodemailer-none') }),
    (err: Error & { response?: string }) => /554 5\.7\.1 <nm3@remote\.example>: Relay access denied/.test(err.response ?? err.message),
  );
  assert.deepEqual(
    h.sink.messages.map((m) => m.to[0]),
    ['nm1@remote.example', 'nm2@remote.example'],
  );
  assert.equal(h.sink.messages[0]!.data.includes('with ESMTPSA'), true);
});
