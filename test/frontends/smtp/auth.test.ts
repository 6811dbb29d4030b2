// SMTP AUTH at the gateway: PLAIN and LOGIN with and without initial response, `*` cancels, CRAM-MD5 only
// with a backend that can verify it, tls_auth_only (AUTH neither advertised nor accepted before TLS),
// Postfix's broken_sasl_auth_clients EHLO line, hostile AUTH input, the brute-force throttle (growing
// delay, then 421 4.7.0 and disconnect, fail2ban-compatible log lines) and backend outages (454 4.7.0).
// Real passwd-file backend from src/auth unless a test needs a backend that misbehaves.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHarness, type Harness } from '../../helpers/smtp-gateway.ts';
import { SmtpClient, plain, b64 } from '../../helpers/smtp-client.ts';
import { requireSwaks, swaks } from '../../helpers/smtp-swaks.ts';
import { AuthThrottle, type SaslBackend } from '../../../src/auth/index.ts';
import { systemClock } from '../../../src/clock.ts';

let h: Harness;
before(async () => {
  await requireSwaks();
  h = await startHarness({ roles: ['smtp', 'submission'], smtp: 'broken_sasl_auth_clients = false' });
});
after(async () => {
  await h?.close();
});

async function ehlo(port: number, ip: string): Promise<{ c: SmtpClient; lines: string[] }> {
  const c = await SmtpClient.connect({ port, localAddress: ip });
  const r = await c.cmd('EHLO auth.test');
  assert.equal(r.code, 250);
  return { c, lines: r.lines };
}

test('EHLO advertises AUTH PLAIN LOGIN (no CRAM-MD5 unless configured), and no old-style AUTH= line by default', async () => {
  const { c, lines } = await ehlo(h.port('smtp'), '127.0.0.50');
  assert.ok(lines.includes('AUTH PLAIN LOGIN'), lines.join('|'));
  assert.ok(!lines.some((l) => l.startsWith('AUTH=')), lines.join('|'));
  assert.ok(lines.includes('STARTTLS'));
  assert.ok(lines.includes('ENHANCEDSTATUSCODES'));
  assert.ok(lines.includes('SIZE 10240000'));
  assert.ok(!lines.some((l) => /XCLIENT|XFORWARD/.test(l)), 'clients may never claim another address');
  await c.quit();
});

test('PLAIN with initial response (swaks), LOGIN without initial response (swaks)', async () => {
  for (const mech of ['PLAIN', 'LOGIN']) {
    const r = await swaks({ port: h.port('smtp'), localAddress: '127.0.0.51', from: 'alice@local.example', to: 'x@remote.example', args: ['--auth', mech, '--auth-user', 'alice', '--auth-password', 'alice-secret'] });
    assert.equal(r.code, 0, r.transcript + r.stderr);
    assert.match(r.transcript, /<[-~]\s+235 2\.7\.0 Authentication successful/);
    if (mech === 'LOGIN') assert.match(r.transcript, /334 VXNlcm5hbWU6/, 'Thunderbird needs the exact challenges');
  }
  await h.waitLog(/^client=unknown\[127\.0\.0\.51\], sasl_method=LOGIN, sasl_username=alice$/);
});

test('PLAIN without initial response and LOGIN with initial response (raw client)', async () => {
  let { c } = await ehlo(h.port('smtp'), '127.0.0.52');
  assert.equal((await c.cmd('AUTH PLAIN')).code, 334);
  assert.equal((await c.cmd(plain('', 'alice', 'alice-secret'))).code, 235);
  await c.quit();
  ({ c } = await ehlo(h.port('smtp'), '127.0.0.52'));
  const r1 = await c.cmd(`AUTH LOGIN ${b64('bob')}`);
  assert.equal(r1.raw, '334 UGFzc3dvcmQ6');
  assert.equal((await c.cmd(b64('bob-secret'))).code, 235);
  await c.quit();
});

test('`*` cancels PLAIN and LOGIN exchanges (501) and the session goes on', async () => {
  const { c } = await ehlo(h.port('smtp'), '127.0.0.53');
  assert.equal((await c.cmd('AUTH PLAIN')).code, 334);
  assert.equal((await c.cmd('*')).code, 501);
  assert.equal((await c.cmd('AUTH LOGIN')).code, 334);
  assert.equal((await c.cmd(b64('alice'))).code, 334);
  assert.equal((await c.cmd('*')).code, 501);
  assert.equal((await c.cmd(`AUTH PLAIN ${plain('', 'alice', 'alice-secret')}`)).code, 235, 'a later AUTH still works');
  await c.quit();
});

test('hostile AUTH input is refused cleanly and the daemon goes on', async () => {
  const cases: Array<{ name: string; lines: string[]; code: number | 'closed' }> = [
    { name: 'bad base64', lines: ['AUTH PLAIN !!!not*base64###'], code: 501 },
    { name: 'authzid ≠ authcid', lines: [`AUTH PLAIN ${plain('bob', 'alice', 'alice-secret')}`], code: 535 },
    { name: 'authzid only (user\\0\\0pass)', lines: [`AUTH PLAIN ${plain('alice', '', 'alice-secret')}`], code: 535 },
    { name: 'NUL inside the password', lines: [`AUTH PLAIN ${b64('\0alice\0alice\0secret')}`], code: 501 },
    { name: 'no NUL at all', lines: [`AUTH PLAIN ${b64('alice alice-secret')}`], code: 501 },
    { name: 'control character in the LOGIN username', lines: ['AUTH LOGIN', b64('ali\r\nce')], code: 501 },
    { name: 'NUL in the LOGIN password', lines: ['AUTH LOGIN', b64('alice'), b64('alice\0-secret')], code: 535 },
    { name: 'unknown mechanism', lines: ['AUTH XOAUTH2 dG9rZW4='], code: 504 },
    { name: 'CRAM-MD5 when not offered', lines: ['AUTH CRAM-MD5'], code: 504 },
    { name: 'too many arguments', lines: ['AUTH PLAIN a b'], code: 501 },
    { name: '100 KB AUTH line', lines: [`AUTH PLAIN ${'A'.repeat(100 * 1024)}`], code: 'closed' },
  ];
  let n = 0;
  for (const k of cases) {
    // one client address per case, so the throttle's delays do not add up across cases
    const { c } = await ehlo(h.port('smtp'), `127.0.1.${++n}`);
    let last = { code: 0, raw: '' };
    for (const l of k.lines) last = await c.cmd(l);
    if (k.code === 'closed') {
      assert.equal(last.code, 421, `${k.name}: ${last.raw}`);
      assert.ok(await c.waitClosed(2000), `${k.name}: connection closed`);
    } else {
      assert.equal(last.code, k.code, `${k.name}: ${last.raw}`);
      // the session is still usable and not authenticated
      assert.equal((await c.cmd('NOOP')).code, 250, k.name);
      await c.cmd('MAIL FROM:<x@remote.example>');
      assert.equal((await c.cmd('RCPT TO:<y@remote.example>')).code, 554, `${k.name}: not authenticated`);
    }
    c.destroy();
  }
  await h.waitLog(/^warning: unknown\[127\.0\.1\.2\]: SASL PLAIN authentication failed: authentication failure, sasl_username=alice$/);
});

test('AUTH before EHLO, during a transaction, and a second AUTH are refused (503)', async () => {
  const c = await SmtpClient.connect({ port: h.port('smtp'), localAddress: '127.0.0.55' });
  assert.equal((await c.cmd(`AUTH PLAIN ${plain('', 'alice', 'alice-secret')}`)).code, 503);
  await c.cmd('EHLO x.test');
  await c.cmd('MAIL FROM:<a@local.example>');
  const mid = await c.cmd(`AUTH PLAIN ${plain('', 'alice', 'alice-secret')}`);
  assert.equal(mid.raw, '503 5.5.1 Error: MAIL transaction in progress');
  await c.cmd('RSET');
  assert.equal((await c.cmd(`AUTH PLAIN ${plain('', 'alice', 'alice-secret')}`)).code, 235);
  assert.equal((await c.cmd(`AUTH PLAIN ${plain('', 'bob', 'bob-secret')}`)).code, 503);
  await c.quit();
});

test('tls_auth_only: a remote client sees no AUTH before STARTTLS, gets 538 for trying, and AUTH works after TLS', async (t) => {
  const s = await startHarness({ roles: ['smtp', 'submission'], loopbackIsLocal: false });
  t.after(() => s.close());
  for (const role of ['smtp', 'submission'] as const) {
    const { c, lines } = await ehlo(s.port(role), '127.0.0.56');
    assert.ok(!lines.some((l) => l.startsWith('AUTH')), `${role}: ${lines.join('|')}`);
    const r = await c.cmd(`AUTH PLAIN ${plain('', 'alice', 'alice-secret')}`);
    assert.equal(r.raw, '538 5.7.11 Encryption required for requested authentication mechanism');
    assert.equal((await c.starttls()).code, 220);
    const e = await c.cmd('EHLO auth.test');
    assert.ok(e.lines.includes('AUTH PLAIN LOGIN'), e.raw);
    assert.ok(!e.lines.includes('STARTTLS'));
    assert.equal((await c.cmd(`AUTH PLAIN ${plain('', 'alice', 'alice-secret')}`)).code, 235);
    await c.quit();
  }
  // and swaks, which refuses to AUTH without the capability, succeeds with --tls
  const r = await swaks({ port: s.port('submission'), localAddress: '127.0.0.56', from: 'alice@local.example', to: 'x@remote.example', args: ['--tls', '--auth', 'PLAIN', '--auth-user', 'alice', '--auth-password', 'alice-secret'] });
  assert.equal(r.code, 0, r.transcript);
  const m = s.sink.messages.at(-1)!;
  assert.match(m.data.toString(), / with ESMTPSA id /);
  assert.match(m.data.toString(), /\(using TLSv1\.[23] with cipher [A-Z0-9_-]+\)/);
});

test('tls_auth_only = false: AUTH is offered in plaintext to remote clients too', async (t) => {
  const s = await startHarness({ roles: ['smtp'], loopbackIsLocal: false, smtp: 'tls_auth_only = false' });
  t.after(() => s.close());
  const { c, lines } = await ehlo(s.port('smtp'), '127.0.0.57');
  assert.ok(lines.includes('AUTH PLAIN LOGIN'));
  assert.equal((await c.cmd(`AUTH PLAIN ${plain('', 'alice', 'alice-secret')}`)).code, 235);
  await c.quit();
});

test('broken_sasl_auth_clients: the extra `250-AUTH=PLAIN LOGIN` line, right after the standard one, and only where AUTH is offered', async (t) => {
  const s = await startHarness({ roles: ['smtp'], loopbackIsLocal: false, smtp: 'broken_sasl_auth_clients = true', auth: 'mechanisms = ["PLAIN", "LOGIN", "CRAM-MD5"]' });
  t.after(() => s.close());
  const c = await SmtpClient.connect({ port: s.port('smtp'), localAddress: '127.0.0.58' });
  const plainEhlo = await c.cmd('EHLO outlook.test');
  assert.ok(!plainEhlo.lines.some((l) => l.startsWith('AUTH')), 'tls_auth_only still hides both lines before TLS');
  await c.starttls();
  const r = await c.cmd('EHLO outlook.test');
  const i = r.lines.indexOf('AUTH PLAIN LOGIN CRAM-MD5');
  assert.ok(i > 0, r.raw);
  assert.equal(r.lines[i + 1], 'AUTH=PLAIN LOGIN CRAM-MD5');
  assert.match(r.raw, /\n250-AUTH PLAIN LOGIN CRAM-MD5\n250-AUTH=PLAIN LOGIN CRAM-MD5\n/);
  // Outlook Express 4 then uses AUTH LOGIN as usual
  assert.equal((await c.cmd('AUTH LOGIN')).raw, '334 VXNlcm5hbWU6');
  assert.equal((await c.cmd(b64('alice'))).raw, '334 UGFzc3dvcmQ6');
  assert.equal((await c.cmd(b64('alice-secret'))).code, 235);
  await c.quit();
});

test('CRAM-MD5 works when configured and the backend holds cleartext (swaks)', async (t) => {
  const s = await startHarness({ roles: ['smtp'], auth: 'mechanisms = ["PLAIN", "LOGIN", "CRAM-MD5"]' });
  t.after(() => s.close());
  const good = await swaks({ port: s.port('smtp'), localAddress: '127.0.0.59', from: 'alice@local.example', to: 'x@remote.example', args: ['--auth', 'CRAM-MD5', '--auth-user', 'alice', '--auth-password', 'alice-secret'] });
  assert.equal(good.code, 0, good.transcript);
  const bad = await swaks({ port: s.port('smtp'), localAddress: '127.0.0.59', from: 'alice@local.example', to: 'x@remote.example', args: ['--auth', 'CRAM-MD5', '--auth-user', 'alice', '--auth-password', 'wrong'] });
  assert.notEqual(bad.code, 0);
  assert.match(bad.transcript, /535 5\.7\.8/);
  await s.waitLog(/^warning: unknown\[127\.0\.0\.59\]: SASL CRAM-MD5 authentication failed: authentication failure, sasl_username=alice$/);
});

function fakeBackend(result: 'tempfail' | 'throw', cram = false): SaslBackend {
  return {
    name: 'fake',
    supportsCramMd5: cram,
    async authenticate() {
      if (result === 'throw') throw new Error('backend exploded');
      return { outcome: 'tempfail', reason: 'backend down' };
    },
    async close() {},
  };
}

test('CRAM-MD5 is not offered when the backend cannot verify it, even if configured', async (t) => {
  const s = await startHarness({ roles: ['smtp'], auth: 'mechanisms = ["PLAIN", "CRAM-MD5"]', backend: fakeBackend('tempfail', false) });
  t.after(() => s.close());
  const { c, lines } = await ehlo(s.port('smtp'), '127.0.0.60');
  assert.ok(lines.includes('AUTH PLAIN'), lines.join('|'));
  assert.equal((await c.cmd('AUTH CRAM-MD5')).code, 504);
  await c.quit();
});

test('a backend that is down (tempfail) or throws answers 454 4.7.0, never success, and is not counted as a failure', async (t) => {
  for (const kind of ['tempfail', 'throw'] as const) {
    const throttle = new AuthThrottle(systemClock, { maxFailures: 2 });
    const s = await startHarness({ roles: ['smtp'], backend: fakeBackend(kind), throttle });
    t.after(() => s.close());
    const { c } = await ehlo(s.port('smtp'), '127.0.0.61');
    for (let i = 0; i < 4; i++) {
      const r = await c.cmd(`AUTH PLAIN ${plain('', 'alice', 'alice-secret')}`);
      assert.equal(r.raw, '454 4.7.0 Temporary authentication failure', `${kind} #${i}`);
    }
    await c.quit();
    await s.waitLog(/^warning: unknown\[127\.0\.0\.61\]: SASL PLAIN authentication failed: Connection lost to authentication server, sasl_username=alice$/);
  }
});

test('no backend configured: AUTH is neither advertised nor accepted; grants and mynetworks still work', async (t) => {
  const s = await startHarness({ roles: ['smtp'], noAuth: true });
  t.after(() => s.close());
  const { c, lines } = await ehlo(s.port('smtp'), '127.0.0.62');
  assert.ok(!lines.some((l) => l.startsWith('AUTH')));
  assert.equal((await c.cmd(`AUTH PLAIN ${plain('', 'alice', 'alice-secret')}`)).raw, '503 5.5.1 Error: authentication not enabled');
  await c.quit();
});

/** fail2ban 1.0 config/filter.d/postfix.conf, mode `auth` (mdre-auth), with its %(_port)s and <HOST>. */
const FAIL2BAN_POSTFIX_AUTH = /^warning: [^[]*\[(?<host>[0-9a-fA-F:.]+)\](?::\d+)?: SASL ((?:LOGIN|PLAIN|login|plain)|(?:CRAM|DIGEST)-MD5) authentication failed:(?! Connection lost to authentication server| Invalid authentication mechanism)/;

test('brute force: free first failure, then a growing delay, then 421 4.7.0 + disconnect and a lockout; successes are not slowed', async (t) => {
  const throttle = new AuthThrottle(systemClock, { maxFailures: 4, baseDelayMs: 300, freeFailures: 1, lockout: 60_000 });
  const s = await startHarness({ roles: ['smtp'], throttle, auth: 'throttle_failures = 4' });
  t.after(() => s.close());
  const ip = '127.0.0.63';
  const { c } = await ehlo(s.port('smtp'), ip);
  const timed = async (line: string) => {
    const t0 = performance.now();
    const r = await c.cmd(line);
    return { r, ms: performance.now() - t0 };
  };
  const f1 = await timed(`AUTH PLAIN ${plain('', 'alice', 'wrong1')}`);
  assert.equal(f1.r.raw, '535 5.7.8 Error: authentication failed');
  assert.ok(f1.ms < 250, `first failure is free (${f1.ms} ms)`);
  const ok = await timed(`AUTH PLAIN ${plain('', 'bob', 'bob-secret')}`);
  assert.equal(ok.r.code, 235);
  assert.ok(ok.ms < 250, `a success is not slowed (${ok.ms} ms)`);
  await c.quit();
  const d = await SmtpClient.connect({ port: s.port('smtp'), localAddress: ip });
  await d.cmd('EHLO x.test');
  const time = async (line: string) => {
    const t0 = performance.now();
    const r = await d.cmd(line, 10_000);
    return { r, ms: performance.now() - t0 };
  };
  const f2 = await time(`AUTH PLAIN ${plain('', 'alice', 'wrong2')}`);
  assert.equal(f2.r.code, 535);
  assert.ok(f2.ms >= 280, `second failure delayed ~300 ms (${f2.ms} ms)`);
  const f3 = await time(`AUTH LOGIN ${b64('alice')}`);
  assert.equal(f3.r.code, 334);
  const f3b = await time(b64('wrong3'));
  assert.equal(f3b.r.code, 535);
  assert.ok(f3b.ms >= 580, `third failure delayed ~600 ms (${f3b.ms} ms)`);
  const f4 = await d.cmd(`AUTH PLAIN ${plain('', 'alice', 'wrong4')}`);
  assert.match(f4.raw, /^421 4\.7\.0 gw\.test Error: too many failed authentications from 127\.0\.0\.63, try again later$/);
  assert.ok(await d.waitClosed(2000), 'disconnected after 421');
  // locked out: refused before any credentials are sent, even with the right password
  const e = await SmtpClient.connect({ port: s.port('smtp'), localAddress: ip });
  await e.cmd('EHLO x.test');
  assert.equal((await e.cmd('AUTH PLAIN')).code, 421);
  assert.ok(await e.waitClosed(2000));
  // another client is not affected
  const other = await SmtpClient.connect({ port: s.port('smtp'), localAddress: '127.0.0.64' });
  await other.cmd('EHLO x.test');
  assert.equal((await other.cmd(`AUTH PLAIN ${plain('', 'alice', 'alice-secret')}`)).code, 235);
  await other.quit();
  // Postfix-shaped lines that fail2ban's postfix filter (mode auth) matches, with the right host
  const failures = s.logs.filter((l) => FAIL2BAN_POSTFIX_AUTH.test(l));
  assert.equal(failures.length, 4, failures.join('\n'));
  for (const l of failures) assert.equal(FAIL2BAN_POSTFIX_AUTH.exec(l)!.groups!.host, ip);
  assert.ok(failures.some((l) => l.startsWith(`warning: unknown[${ip}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6`)));
  await s.waitLog(/^warning: SASL authentication failure limit exceeded: 4 from unknown\[127\.0\.0\.63\] for service smtp$/);
});
