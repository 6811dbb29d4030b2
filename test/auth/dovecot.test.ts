// `dovecot` SASL backend against a real Dovecot 2.3 auth service (unix socket and TCP), plus scripted
// servers for protocol corners a real Dovecot will not produce on demand (old `temp` flag, bad version,
// an unexpected CONT, an endless line).
//
// Debian packages: dovecot-core (dovecot, doveadm). Needs root (Dovecot's master process).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readFile, mkdtemp, rm, chmod, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DovecotAuthBackend, tabUnescape } from '../../src/auth/dovecot.ts';
import { createBackend } from '../../src/auth/index.ts';
import type { AuthRequest, AuthResult } from '../../src/auth/types.ts';
import { RelaygateError } from '../../src/errors.ts';
import { systemClock } from '../../src/clock.ts';
import { createLogger, silentLogger } from '../../src/log/logger.ts';
import { pollFor } from '../helpers/proc.ts';
import { startAuthDovecot, type AuthDovecot } from './dovecot-auth-server.ts';
import { captureLogger, sleep } from './tools.ts';

let dc: AuthDovecot;
const backends: DovecotAuthBackend[] = [];

before(async () => {
  dc = await startAuthDovecot({
    users: [
      { user: 'alice', pass: 'alicepw' },
      { user: 'bob', pass: 'bob pw ünï' },
      // ~1 s of Dovecot CPU per check: keeps a request in flight on purpose
      { user: 'slow', pass: 'slowpw', rounds: 5_000_000 },
    ],
  });
});

after(async () => {
  for (const b of backends) await b.close();
  await dc?.stop();
});

function mk(path: string, timeoutMs = 5000, logger = process.env.RG_DEBUG ? createLogger({ level: 'debug', destination: 2 }) : silentLogger()): DovecotAuthBackend {
  const b = new DovecotAuthBackend({ path, timeoutMs, logger, clock: systemClock, backoffMinMs: 50, backoffMaxMs: 500 });
  backends.push(b);
  return b;
}

// Dovecot's auth penalty delays every later request from a client IP that failed (2 s, doubling to 15 s,
// whatever auth_failure_delay says), so each request comes from its own address unless a test says otherwise.
let ipCounter = 0;
const nextIp = (): string => `127.0.${2 + Math.floor(ipCounter / 250)}.${1 + (ipCounter++ % 250)}`;

const req = (username: string, password: string, extra: Partial<AuthRequest> = {}): AuthRequest => ({
  mechanism: 'PLAIN',
  username,
  password,
  clientIp: nextIp(),
  localIp: '127.0.0.1',
  secured: true,
  ...extra,
});
const outcome = (r: AuthResult): string => (r.outcome === 'ok' ? `ok:${r.user}` : r.outcome);

test('unix socket: ok (with Dovecot\'s user name), wrong password, unknown user; CRAM-MD5 never offered', async () => {
  const b = mk(dc.socketPath);
  assert.equal(outcome(await b.authenticate(req('alice', 'alicepw'))), 'ok:alice');
  assert.equal(outcome(await b.authenticate(req('ALICE', 'alicepw'))), 'ok:alice'); // Dovecot's %Lu
  assert.equal(outcome(await b.authenticate(req('bob', 'bob pw ünï'))), 'ok:bob');
  assert.equal(outcome(await b.authenticate(req('alice', 'wrong'))), 'fail');
  assert.equal(outcome(await b.authenticate(req('nosuch', 'x'))), 'fail');
  assert.deepEqual([...b.mechanisms].sort(), ['LOGIN', 'PLAIN']);
  assert.equal(b.supportsCramMd5, false);
  const cram = await b.authenticate({ ...req('alice', 'alicepw'), mechanism: 'CRAM-MD5', challenge: '<1@x>', digest: '0'.repeat(32) });
  assert.equal(cram.outcome, 'fail');
  assert.equal(b.connectionCount, 1, 'one persistent connection');
  assert.equal(outcome(await b.authenticate(req('alice', 'alicepw'))), 'ok:alice', 'the connection survived the CRAM-MD5 refusal');
});

test('the LOGIN mechanism is forwarded as PLAIN', async () => {
  const b = mk(dc.socketPath);
  assert.equal(outcome(await b.authenticate(req('bob', 'bob pw ünï', { mechanism: 'LOGIN' }))), 'ok:bob');
  assert.equal(outcome(await b.authenticate(req('bob', 'nope', { mechanism: 'LOGIN' }))), 'fail');
});

test('TCP host:port (inet_listener)', async () => {
  const b = mk(dc.tcp);
  assert.equal(outcome(await b.authenticate(req('alice', 'alicepw'))), 'ok:alice');
  assert.equal(outcome(await b.authenticate(req('alice', 'x'))), 'fail');
});

test('the real client IP reaches Dovecot as rip= (its log names it), IPv4 and IPv6', async () => {
  const b = mk(dc.socketPath);
  await b.authenticate(req('alice', 'wrong-for-rip', { clientIp: '192.0.2.77' }));
  await b.authenticate(req('alice', 'wrong-for-rip', { clientIp: '2001:db8::7' }));
  const seen = await pollFor(async () => {
    const log = await dc.readLog();
    return /\(alice,192\.0\.2\.77\)/.test(log) && /\(alice,2001:db8::7\)/.test(log) ? log : undefined;
  }, 5000, 100);
  assert.ok(seen, `Dovecot's log lacks the client IPs:\n${(await dc.readLog()).slice(-1500)}`);
});

test('50 concurrent requests on one connection are matched by id', async () => {
  const b = mk(dc.socketPath, 15_000);
  const jobs: Array<[AuthRequest, string]> = [];
  for (let i = 0; i < 50; i++) {
    if (i % 5 === 4) jobs.push([req('alice', `wrong${i}`, { clientIp: `127.0.1.${i}` }), 'fail']);
    else if (i % 2) jobs.push([req('bob', 'bob pw ünï', { clientIp: `127.0.1.${i}` }), 'ok:bob']);
    else jobs.push([req('alice', 'alicepw', { clientIp: `127.0.1.${i}` }), 'ok:alice']);
  }
  const results = await Promise.all(jobs.map(([r]) => b.authenticate(r)));
  assert.deepEqual(results.map(outcome), jobs.map(([, want]) => want));
  assert.equal(b.connectionCount, 1);
});

test('a check slower than the deadline is tempfail; Dovecot\'s late answer is ignored', async () => {
  const cap = captureLogger();
  const b = mk(dc.socketPath, 300, cap.logger);
  const t0 = performance.now();
  const r = await b.authenticate(req('slow', 'slowpw'));
  assert.equal(r.outcome, 'tempfail');
  assert.ok(performance.now() - t0 < 1000);
  // the OK for the timed-out id arrives ~1 s later and must not be applied to anything
  const ignored = await pollFor(() => (cap.lines().some((l) => /id not in flight/.test(String(l.msg))) ? true : undefined), 8000, 50);
  assert.equal(ignored, true);
  // (a failure is not tried here: Dovecot answers failures on a 500 ms tick, beyond this 300 ms deadline)
  assert.equal(outcome(await b.authenticate(req('alice', 'alicepw'))), 'ok:alice');
  assert.equal(b.connectionCount, 1, 'the timeout did not cost the connection');
});

test('Dovecot reports code=temp_fail (passwd-file unreadable) → tempfail, not fail', async () => {
  const b = mk(dc.socketPath);
  const original = await readFile(dc.usersFile, 'utf8');
  try {
    await appendFile(dc.usersFile, '# changed size so Dovecot re-opens the file\n');
    await chmod(dc.usersFile, 0o600); // root-only: the auth process (user dovecot) cannot read it
    await sleep(1100); // Dovecot stats its passwd-file at most once per second
    const r = await b.authenticate(req('alice', 'alicepw'));
    assert.equal(r.outcome, 'tempfail', JSON.stringify(r));
  } finally {
    await chmod(dc.usersFile, 0o644);
    await appendFile(dc.usersFile, '\n');
  }
  assert.ok(original.length > 0);
  const back = await pollFor(async () => ((await b.authenticate(req('alice', 'alicepw'))).outcome === 'ok' ? true : undefined), 5000, 200);
  assert.equal(back, true);
});

test('Dovecot killed mid-request → tempfail at once, tempfail while down, back after a restart', async () => {
  const cap = captureLogger();
  const b = mk(dc.socketPath, 10_000, cap.logger);
  assert.equal(outcome(await b.authenticate(req('alice', 'alicepw'))), 'ok:alice');
  const t0 = performance.now();
  const inFlight = b.authenticate(req('slow', 'slowpw'));
  await sleep(150);
  await dc.kill();
  const r = await inFlight;
  assert.equal(r.outcome, 'tempfail');
  assert.ok(performance.now() - t0 < 3000, 'the in-flight request waited for its deadline instead of failing at once');
  for (let i = 0; i < 3; i++) {
    const t1 = performance.now();
    assert.equal((await b.authenticate(req('alice', 'alicepw'))).outcome, 'tempfail');
    assert.ok(performance.now() - t1 < 2000);
  }
  await dc.start();
  const back = await pollFor(async () => ((await b.authenticate(req('alice', 'alicepw'))).outcome === 'ok' ? true : undefined), 10_000, 100);
  assert.equal(back, true, 'no recovery after the restart');
  assert.ok(b.connectionCount >= 2);
  const msgs = cap.lines().map((l) => `${String(l.level)} ${String(l.msg)}`);
  assert.ok(msgs.some((m) => /^warn .*connection lost/.test(m)), msgs.join('\n'));
  assert.ok(msgs.some((m) => /^info .*connected again/.test(m)), msgs.join('\n'));
  assert.ok(!cap.text().includes('alicepw') && !cap.text().includes('slowpw'), 'a password reached the log');
});

test('no Dovecot at the path: tempfail quickly, never ok', async () => {
  const b = mk(join(dc.dir, 'run', 'no-such-socket'), 5000);
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    assert.equal((await b.authenticate(req('alice', 'alicepw'))).outcome, 'tempfail');
    assert.ok(performance.now() - t0 < 1000);
  }
});

test('Dovecot offering only LOGIN: the LOGIN exchange (two CONT rounds) is used', async () => {
  const only = await startAuthDovecot({ users: [{ user: 'carol', pass: 'carolpw' }], mechanisms: 'login' });
  try {
    const b = mk(only.socketPath);
    assert.equal(outcome(await b.authenticate(req('carol', 'carolpw'))), 'ok:carol');
    assert.equal(outcome(await b.authenticate(req('carol', 'nope', { mechanism: 'LOGIN' }))), 'fail');
    assert.deepEqual(b.mechanisms, ['LOGIN']);
  } finally {
    await only.stop();
  }
});

test('bad options fail at creation with RG_ERR_AUTH_BACKEND', async () => {
  const base = { backend: 'dovecot' as const, timeoutMs: 1000, logger: silentLogger(), clock: systemClock };
  for (const path of ['private/auth', 'localhost:12345', '127.0.0.1', '127.0.0.1:99999']) {
    await assert.rejects(createBackend({ ...base, path }), (e: unknown) => e instanceof RelaygateError && e.code === 'RG_ERR_AUTH_BACKEND', path);
  }
  await assert.rejects(createBackend({ ...base, path: '/run/x', service: 'smtp\tsecured' }), /invalid service/);
  const b = await createBackend({ ...base, path: join(tmpdir(), 'rg-no-dovecot-here') });
  assert.equal(b.name, 'dovecot');
  await b.close();
});

// ---- scripted servers: protocol corners ----

type Script = (line: string, sock: net.Socket) => void;

async function scripted(handshake: string, onLine: Script): Promise<{ path: string; lines: string[]; close(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'rg-fake-auth-'));
  const path = join(dir, 'auth');
  const lines: string[] = [];
  const socks = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    socks.add(s);
    s.on('close', () => socks.delete(s));
    s.on('error', () => undefined);
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lines.push(line);
        if (line.startsWith('CPID')) s.write(handshake);
        else if (!line.startsWith('VERSION')) onLine(line, s);
      }
    });
  });
  await new Promise<void>((r) => srv.listen(path, () => r()));
  return {
    path,
    lines,
    close: async () => {
      for (const s of socks) s.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const HANDSHAKE = 'VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nSPID\t1\nCUID\t1\nCOOKIE\tx\nDONE\n';

test('wire format: handshake and AUTH line are byte for byte what Postfix sent in the capture', async () => {
  const capture = await readFile(new URL('../fixtures/auth/dovecot-auth-wire.log', import.meta.url), 'utf8');
  const captured = capture.split('\n').filter((l) => l.includes('C->S')).map((l) => JSON.parse(l.slice(l.indexOf('"'))) as string);
  const srv = await scripted(HANDSHAKE, (line, s) => {
    const f = line.split('\t');
    s.write(`OK\t${f[1]}\tuser=alice\n`);
  });
  try {
    const b = mk(srv.path);
    const r = await b.authenticate({ mechanism: 'PLAIN', username: 'alice', password: 'alicepw', clientIp: '127.0.0.14', localIp: '127.0.0.1', secured: false });
    assert.equal(outcome(r), 'ok:alice');
    assert.equal(srv.lines[0], 'VERSION\t1\t0');
    assert.match(srv.lines[1]!, /^CPID\t\d+$/);
    assert.equal(captured[0], `VERSION\t1\t0\nCPID\t2546\n`);
    assert.equal(srv.lines[2] + '\n', captured[1], 'AUTH line differs from the Postfix capture');
    const r2 = await b.authenticate({ mechanism: 'PLAIN', username: 'bob', password: 'x', clientIp: '::ffff:192.0.2.1', secured: true });
    assert.equal(r2.outcome, 'ok');
    assert.equal(srv.lines[3], `AUTH\t2\tPLAIN\tservice=smtp\tnologin\trip=192.0.2.1\tsecured\tresp=${Buffer.from('\0bob\0x').toString('base64')}`);
  } finally {
    await srv.close();
  }
});

test('FAIL forms: code=temp_fail and the old `temp` flag are tempfail; reason/other codes are fail; user= is tab-unescaped', async () => {
  const answers: Record<string, string> = {
    t1: 'FAIL\t%\tuser=t1\tcode=temp_fail\treason=ldap down',
    t2: 'FAIL\t%\ttemp',
    f1: 'FAIL\t%\tuser=f1\treason=Password expired\tcode=pass_expired',
    f2: 'FAIL\t%\tuser=f2',
    ok1: 'OK\t%\tuser=we\x01tird\x011',
  };
  const srv = await scripted(HANDSHAKE, (line, s) => {
    const f = line.split('\t');
    const user = Buffer.from(f.find((x) => x.startsWith('resp='))!.slice(5), 'base64').toString().split('\0')[1]!;
    s.write(answers[user]!.replace('%', f[1]!) + '\n');
  });
  try {
    const b = mk(srv.path);
    assert.equal((await b.authenticate(req('t1', 'x'))).outcome, 'tempfail');
    assert.equal((await b.authenticate(req('t2', 'x'))).outcome, 'tempfail');
    assert.deepEqual(await b.authenticate(req('f1', 'x')), { outcome: 'fail', reason: 'dovecot: Password expired' });
    assert.equal((await b.authenticate(req('f2', 'x'))).outcome, 'fail');
    assert.equal(outcome(await b.authenticate(req('ok1', 'x'))), 'ok:we\tird\x01');
    assert.equal(tabUnescape('a\x01nb\x01rc'), 'a\nb\rc');
  } finally {
    await srv.close();
  }
});

test('a server that offers neither PLAIN nor LOGIN, or speaks version 2, gets no AUTH: tempfail', async () => {
  for (const hs of ['VERSION\t1\t2\nMECH\tCRAM-MD5\nDONE\n', 'VERSION\t2\t0\nMECH\tPLAIN\nDONE\n', 'MECH\tPLAIN\nDONE\n']) {
    const srv = await scripted(hs, () => undefined);
    try {
      const b = mk(srv.path, 2000);
      assert.equal((await b.authenticate(req('alice', 'x'))).outcome, 'tempfail', JSON.stringify(hs));
      assert.ok(!srv.lines.some((l) => l.startsWith('AUTH')), `AUTH sent after ${JSON.stringify(hs)}`);
    } finally {
      await srv.close();
    }
  }
});

test('an unexpected CONT, an endless line, a dropped connection: tempfail, never ok', async () => {
  const srv1 = await scripted(HANDSHAKE, (line, s) => s.write(`CONT\t${line.split('\t')[1]}\tVXNlcm5hbWU6\n`));
  const srv2 = await scripted(HANDSHAKE, (_line, s) => s.write('OK\t1\tuser=' + 'x'.repeat(70_000)));
  const srv3 = await scripted(HANDSHAKE, (_line, s) => s.destroy());
  try {
    for (const srv of [srv1, srv2, srv3]) {
      const b = mk(srv.path, 3000);
      const t0 = performance.now();
      assert.equal((await b.authenticate(req('alice', 'x'))).outcome, 'tempfail');
      assert.ok(performance.now() - t0 < 2500);
    }
  } finally {
    await Promise.all([srv1.close(), srv2.close(), srv3.close()]);
  }
});

test('a late answer to a timed-out id never completes another request', async () => {
  const held: Array<[string, net.Socket]> = [];
  const srv = await scripted(HANDSHAKE, (line, s) => {
    const id = line.split('\t')[1]!;
    if (id === '1') held.push([id, s]);
    else {
      // answer id 2 only after the late OK for id 1 went out first
      for (const [hid, hs] of held.splice(0)) hs.write(`OK\t${hid}\tuser=intruder\n`);
      setTimeout(() => s.write(`FAIL\t${id}\tuser=bob\n`), 50);
    }
  });
  try {
    const b = mk(srv.path, 200);
    assert.equal((await b.authenticate(req('alice', 'x'))).outcome, 'tempfail');
    const b2 = await b.authenticate({ ...req('bob', 'wrong'), clientIp: '127.0.0.10' });
    assert.equal(b2.outcome, 'fail');
  } finally {
    await srv.close();
  }
});
