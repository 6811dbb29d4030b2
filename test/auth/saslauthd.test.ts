// `saslauthd` SASL backend against a real Cyrus saslauthd 2.1 (sasldb mechanism, private database), the
// captured wire bytes, and scripted sockets for a silent or garbled server.
//
// Debian packages: sasl2-bin (saslauthd, saslpasswd2; its install creates /etc/sasldb2, the bind-mount
// target), util-linux (unshare). Needs root (mount namespace).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeSaslauthdRequest, SaslauthdBackend } from '../../src/auth/saslauthd.ts';
import { createBackend } from '../../src/auth/index.ts';
import type { AuthRequest, AuthResult } from '../../src/auth/types.ts';
import { RelaygateError } from '../../src/errors.ts';
import { systemClock } from '../../src/clock.ts';
import { silentLogger } from '../../src/log/logger.ts';
import { startSaslauthd, type PrivateSaslauthd } from './saslauthd-server.ts';

let sd: PrivateSaslauthd;
const HOST = hostname();

before(async () => {
  sd = await startSaslauthd([
    { user: 'dctest', pass: 'dctestpw', realm: 'EXAMPLE.ORG' },
    { user: 'hostuser', pass: 'host pw ünï', realm: HOST },
  ]);
});

after(async () => {
  await sd?.stop();
});

const base = { timeoutMs: 5000, logger: silentLogger(), clock: systemClock };
const req = (username: string, password: string, extra: Partial<AuthRequest> = {}): AuthRequest => ({
  mechanism: 'PLAIN',
  username,
  password,
  clientIp: '192.0.2.9',
  secured: true,
  ...extra,
});
const outcome = (r: AuthResult): string => (r.outcome === 'ok' ? `ok:${r.user}` : r.outcome);

test('request bytes are exactly those of the capture (four 16-bit-length fields)', async () => {
  const capture = await readFile(new URL('../fixtures/auth/saslauthd-wire.txt', import.meta.url), 'utf8');
  const blocks = capture.split('\n== ').slice(0, 4);
  const cases: Array<[string, string, string, string]> = [
    ['dctest', 'dctestpw', 'smtp', ''],
    ['dctest', 'wrong', 'smtp', ''],
    ['nosuch', 'x', 'smtp', ''],
    ['dctest', 'dctestpw', 'smtp', 'EXAMPLE.ORG'],
  ];
  cases.forEach(([u, p, s, r], i) => {
    const hex = /C hex: ([0-9a-f]+)/.exec(blocks[i]!)![1];
    assert.equal(encodeSaslauthdRequest(u, p, s, r).toString('hex'), hex, `capture block ${i + 1}`);
  });
});

test('real saslauthd: right password ok, wrong password and unknown user fail', async () => {
  const b = await SaslauthdBackend.open({ ...base, path: sd.muxPath, realm: 'EXAMPLE.ORG' });
  assert.equal(outcome(await b.authenticate(req('dctest', 'dctestpw'))), 'ok:dctest');
  assert.equal(outcome(await b.authenticate(req('dctest', 'dctestpw', { mechanism: 'LOGIN' }))), 'ok:dctest');
  assert.equal(outcome(await b.authenticate(req('dctest', 'wrong'))), 'fail');
  assert.equal(outcome(await b.authenticate(req('nosuch', 'x'))), 'fail');
  assert.equal(b.supportsCramMd5, false);
  assert.equal((await b.authenticate({ ...req('dctest', 'x'), mechanism: 'CRAM-MD5', challenge: '<1@x>', digest: '0'.repeat(32) })).outcome, 'fail');
  await b.close();
});

test('realm: configured realm, empty realm (saslauthd uses its host name), split user@domain', async () => {
  const noRealm = await SaslauthdBackend.open({ ...base, path: sd.muxPath });
  assert.equal(outcome(await noRealm.authenticate(req('dctest', 'dctestpw'))), 'fail', 'dctest lives in EXAMPLE.ORG, not the host realm');
  assert.equal(outcome(await noRealm.authenticate(req('hostuser', 'host pw ünï'))), 'ok:hostuser');
  assert.equal(outcome(await noRealm.authenticate(req('dctest@EXAMPLE.ORG', 'dctestpw'))), 'fail', 'no splitting unless asked');
  const split = await SaslauthdBackend.open({ ...base, path: sd.muxPath, splitRealm: true });
  assert.equal(outcome(await split.authenticate(req('dctest@EXAMPLE.ORG', 'dctestpw'))), 'ok:dctest@EXAMPLE.ORG');
  assert.equal(outcome(await split.authenticate(req('dctest@OTHER.ORG', 'dctestpw'))), 'fail');
  assert.equal(outcome(await split.authenticate(req('hostuser', 'host pw ünï'))), 'ok:hostuser');
  const fixed = await SaslauthdBackend.open({ ...base, path: sd.muxPath, realm: 'EXAMPLE.ORG', splitRealm: true });
  assert.equal(outcome(await fixed.authenticate(req('hostuser', 'host pw ünï'))), 'fail', 'the configured realm wins');
  for (const b of [noRealm, split, fixed]) await b.close();
});

test('the directory given to saslauthd -m works as path (DIR/mux); 10 checks at once', async () => {
  const b = (await createBackend({ ...base, backend: 'saslauthd', path: sd.runDir, realm: 'EXAMPLE.ORG' })) as SaslauthdBackend;
  assert.equal(b.socketPath, sd.muxPath);
  const results = await Promise.all(Array.from({ length: 10 }, (_, i) => b.authenticate(req('dctest', i % 3 === 2 ? 'bad' : 'dctestpw'))));
  assert.deepEqual(results.map(outcome), Array.from({ length: 10 }, (_, i) => (i % 3 === 2 ? 'fail' : 'ok:dctest')));
  await b.close();
});

test('saslauthd stopped (stale socket, then no socket) → tempfail, never ok', async () => {
  const own = await startSaslauthd([{ user: 'u', pass: 'p', realm: 'R' }]);
  const b = await SaslauthdBackend.open({ ...base, path: own.muxPath, realm: 'R' });
  assert.equal(outcome(await b.authenticate(req('u', 'p'))), 'ok:u');
  await own.stop({ keepDir: true });
  const r = await b.authenticate(req('u', 'p'));
  assert.equal(r.outcome, 'tempfail', JSON.stringify(r));
  await rm(own.dir, { recursive: true, force: true });
  const r2 = await b.authenticate(req('u', 'p'));
  assert.equal(r2.outcome, 'tempfail');
  assert.match(r2.outcome === 'tempfail' ? r2.reason : '', /ENOENT/);
  await b.close();
});

async function fakeMux(onConn: (s: net.Socket) => void): Promise<{ path: string; close(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'rg-fake-mux-'));
  const path = join(dir, 'mux');
  const socks = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    socks.add(s);
    s.on('error', () => undefined);
    s.on('close', () => socks.delete(s));
    onConn(s);
  });
  await new Promise<void>((r) => srv.listen(path, () => r()));
  return {
    path,
    close: async () => {
      for (const s of socks) s.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

test('replayed capture replies: OK → ok, "NO Incorrect password" → fail', async () => {
  const capture = await readFile(new URL('../fixtures/auth/saslauthd-wire.txt', import.meta.url), 'utf8');
  const replies = [...capture.matchAll(/S hex: ([0-9a-f]+)/g)].map((m) => Buffer.from(m[1]!, 'hex'));
  for (const [reply, want] of [[replies[0]!, 'ok:u'], [replies[1]!, 'fail'], [replies[2]!, 'fail']] as const) {
    const srv = await fakeMux((s) => s.once('data', () => s.end(reply)));
    const b = await SaslauthdBackend.open({ ...base, path: srv.path });
    assert.equal(outcome(await b.authenticate(req('u', 'p'))), want);
    await b.close();
    await srv.close();
  }
});

test('a silent, garbled or short-replying server → tempfail within the deadline', async () => {
  const servers = [
    await fakeMux(() => undefined), // never answers
    await fakeMux((s) => s.once('data', () => s.end(Buffer.from('0005MAYBE')))), // length 0x3030
    await fakeMux((s) => s.once('data', () => s.end(Buffer.from([0, 5, 0x4f])))), // short
    await fakeMux((s) => s.once('data', () => s.end(Buffer.from([0, 5, ...Buffer.from('HELLO')])))), // neither OK nor NO
    await fakeMux((s) => s.once('data', () => s.end(Buffer.from([0, 0])))),
    await fakeMux((s) => s.destroy()),
  ];
  try {
    for (const srv of servers) {
      const b = await SaslauthdBackend.open({ ...base, timeoutMs: 300, path: srv.path });
      const t0 = performance.now();
      const r = await b.authenticate(req('u', 'p'));
      assert.equal(r.outcome, 'tempfail', JSON.stringify(r));
      assert.ok(performance.now() - t0 < 1000);
      await b.close();
    }
  } finally {
    for (const s of servers) await s.close();
  }
});

test('bad options fail at creation with RG_ERR_AUTH_BACKEND; a socket not there yet is only a warning', async () => {
  const isErr = (e: unknown): boolean => e instanceof RelaygateError && e.code === 'RG_ERR_AUTH_BACKEND';
  const o = { ...base, backend: 'saslauthd' as const };
  await assert.rejects(createBackend({ ...o, path: 'run/saslauthd/mux' }), isErr);
  await assert.rejects(createBackend({ ...o, path: '127.0.0.1:3000' }), isErr);
  await assert.rejects(createBackend({ ...o, path: sd.muxPath, service: 'smtp\0' }), isErr);
  await assert.rejects(createBackend({ ...o, path: sd.muxPath, realm: 'a\nb' }), isErr);
  const dir = await mkdtemp(join(tmpdir(), 'rg-saslauthd-opt-'));
  try {
    await writeFile(join(dir, 'file'), 'x');
    await assert.rejects(createBackend({ ...o, path: join(dir, 'file') }), isErr);
    const later = await createBackend({ ...o, path: join(dir, 'not-yet') });
    assert.equal((await later.authenticate(req('u', 'p'))).outcome, 'tempfail');
    await later.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
