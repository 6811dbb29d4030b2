// The stdin source, in-process and through the real `relaygate run --stdin-format` pipe; and the time rules
// every source shares: a grant counts from the line's own time, a line older than grace makes no grant.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { openAccessMap } from '../../src/store/index.ts';
import { CidrSet } from '../../src/net/index.ts';
import { manualClock } from '../../src/clock.ts';
import { silentLogger } from '../../src/log/logger.ts';
import { getFormat } from '../../src/sources/formats/index.ts';
import { LineParser } from '../../src/sources/parser.ts';
import { LoginRecorder } from '../../src/sources/recorder.ts';
import { StdinWatch } from '../../src/sources/stdin-watch.ts';

const NOW = Date.parse('2026-11-21T12:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString().replace('Z', '+00:00');
const login = (at: number, ip: string, user = 'alice') =>
  `${iso(at)} mx dovecot: pop3-login: Login: user=<${user}>, method=PLAIN, rip=${ip}, lip=192.0.2.1, mpid=4711, session=<AbCdEf012345>`;

test('stdin: logins become grants counted from the line time; stale and failed lines make none', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rg-stdin-'));
  const clock = manualClock(NOW);
  const map = await openAccessMap({ type: 'lmdb', path: dir, grace: 1800, mynetworks: new CidrSet(['127.0.0.0/8']), neverAuthorize: new CidrSet([]), clock, logger: silentLogger() });
  try {
    const input = new PassThrough();
    const parser = new LineParser({ format: getFormat('dovecot'), prefix: 'rfc3339' });
    const recorder = new LoginRecorder({ map, clock, logger: silentLogger(), source: 'dovecot:stdin', trackLogout: false, grace: 1800 });
    const w = new StdinWatch(input, parser, recorder, clock, silentLogger());
    w.start();
    input.write(`${login(NOW - 60_000, '192.0.2.7')}\n`);
    input.write(`${login(NOW - 3_600_000, '192.0.2.8')}\n`); // an hour old: replayed, not a login now
    input.write(`${iso(NOW)} mx dovecot: pop3-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<x>, method=PLAIN, rip=192.0.2.9, lip=192.0.2.1, session=<AbCd>\n`);
    input.write(`${login(NOW - 1000, '2001:DB8::0:7', 'bob')}\n`);
    input.end();
    await w.finished();
    const g = await map.lookup('192.0.2.7');
    assert.equal(g?.user, 'alice');
    assert.equal(g?.lastSeen, NOW - 60_000, 'the grant counts from the line time');
    assert.equal(g?.expires, NOW - 60_000 + 1_800_000);
    assert.equal(await map.lookup('192.0.2.8'), undefined, 'a line older than grace makes no grant');
    assert.equal(await map.lookup('192.0.2.9'), undefined, 'a failed login makes no grant');
    assert.equal((await map.lookup('2001:db8::7'))?.user, 'bob');
    assert.equal(recorder.counters.logins, 3);
    assert.equal(recorder.counters.granted, 2);
  } finally {
    await map.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('relaygate run --stdin-format dovecot: a syslog pipe feeds the daemon', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rg-stdin-run-'));
  const root = resolve(import.meta.dirname, '../..');
  try {
    await writeFile(join(dir, 'relaygate.toml'), 'data_dir = "./data"\nlog_level = "info"\n');
    const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), join(root, 'src/main.ts'), 'run', '--stdin-format', 'dovecot', '--stdin-prefix', 'rfc3339'], {
      cwd: dir,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    const seen = (needle: string, ms: number) =>
      new Promise<boolean>((res) => {
        const t0 = Date.now();
        const iv = setInterval(() => {
          if (out.includes(needle) || Date.now() - t0 > ms) {
            clearInterval(iv);
            res(out.includes(needle));
          }
        }, 20);
      });
    assert.ok(await seen('"event":"components"', 20_000), out);
    child.stdin.write(`${login(Date.now(), '198.51.100.20', 'carol')}\n`);
    child.stdin.end();
    assert.ok(await seen('"event":"stdin_end"', 10_000), out);
    const code = await new Promise<number | null>((res) => {
      child.on('close', res);
      child.kill('SIGTERM');
    });
    assert.equal(code, 0, out);
    const q = await new Promise<string>((res) => {
      const c = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), join(root, 'src/main.ts'), 'map', 'query', '198.51.100.20', '--json'], { cwd: dir });
      let s = '';
      c.stdout.on('data', (d: Buffer) => (s += d));
      c.on('close', () => res(s));
    });
    assert.equal(JSON.parse(q).user, 'carol');
    assert.match(JSON.parse(q).source, /^dovecot:stdin$/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('run --stdin-format with an unknown format is a usage error naming the known ones', async () => {
  const root = resolve(import.meta.dirname, '../..');
  const r = await new Promise<{ code: number | null; err: string }>((res) => {
    const c = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), join(root, 'src/main.ts'), 'run', '--stdin-format', 'nosuch'], { cwd: tmpdir() });
    let err = '';
    c.stderr.on('data', (d: Buffer) => (err += d));
    c.on('close', (code) => res({ code, err }));
  });
  assert.equal(r.code, 64);
  assert.match(r.err, /unknown format; known: .*dovecot/);
});
