// The journald source against a REAL journal: export-format text (test/fixtures/journal/) is turned into a
// journal file by systemd-journal-remote and followed by the real `journalctl -f -o json`, into a real LMDB
// access map. A small fake journalctl (a shell script) covers what a real one will not do on demand:
// malformed output, dying, and the binary being missing.
//
// Debian packages needed: systemd (journalctl), systemd-journal-remote (/lib/systemd/systemd-journal-remote).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, readFile, writeFile, chmod, access } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { openAccessMap, type AccessMap, type Grant } from '../../src/store/index.ts';
import { CidrSet } from '../../src/net/index.ts';
import { systemClock } from '../../src/clock.ts';
import { createLogger, silentLogger, type Logger } from '../../src/log/logger.ts';
import { watchSchema, type WatchConfig } from '../../src/config/schema.ts';
import { parserFor } from '../../src/sources/index.ts';
import { getFormat } from '../../src/sources/formats/index.ts';
import { JournaldWatch, decodeJournalLine, journalStateKey, journalctlArgs, type JournaldWatchOptions } from '../../src/sources/journald.ts';
import { run, runOk } from '../helpers/proc.ts';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'journal');
const JOURNAL_REMOTE = '/lib/systemd/systemd-journal-remote';
const GRACE = 1800;
const FAST = { min: 50, max: 200 };
const BOOT = '6c3b1e5a9f2d4c7e8a1b0d9c8e7f6a5b';
const MACHINE = '0f1e2d3c4b5a69788796a5b4c3d2e1f0';

interface LogLine {
  level: string;
  event?: string;
  msg: string;
  [k: string]: unknown;
}

function captureLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as LogLine);
      cb();
    },
  });
  return { logger: createLogger({ level: 'debug', destination: stream }), lines };
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** µs since the epoch, `offsetSec` from now (the journal's __REALTIME_TIMESTAMP unit). */
function usAt(nowMs: number, offsetSec: number): bigint {
  return BigInt(nowMs + offsetSec * 1000) * 1000n;
}

/** The fixture template with `{{T-120}}` filled in relative to `nowMs`. */
async function fixtureExport(nowMs: number): Promise<string> {
  const text = await readFile(join(FIXTURES, 'dovecot.export.in'), 'utf8');
  return text.replace(/\{\{T-(\d+)\}\}/g, (_m, s: string) => usAt(nowMs, -Number(s)).toString());
}

/** One export-format entry of text fields (all from dovecot.service unless overridden). */
function exportEntry(fields: Record<string, string>): string {
  const base: Record<string, string> = {
    _BOOT_ID: BOOT,
    _MACHINE_ID: MACHINE,
    _HOSTNAME: 'mx',
    _TRANSPORT: 'syslog',
    _SYSTEMD_UNIT: 'dovecot.service',
    SYSLOG_IDENTIFIER: 'dovecot',
    _PID: '3336',
    ...fields,
  };
  return `${Object.entries(base)
    .map(([k, v]) => `${k}=${v}`)
    .join('\n')}\n\n`;
}

/** An export-format entry whose MESSAGE is binary (not UTF-8): `FIELD\n<le64 length><bytes>\n`. */
function binaryMessageEntry(realtimeUs: bigint, monotonic: number, message: Buffer): Buffer {
  const head = exportEntry({ __REALTIME_TIMESTAMP: realtimeUs.toString(), __MONOTONIC_TIMESTAMP: String(monotonic) }).replace(/\n\n$/, '\n');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(message.length));
  return Buffer.concat([Buffer.from(head), Buffer.from('MESSAGE\n'), len, message, Buffer.from('\n\n')]);
}

/** Runs systemd-journal-remote: export text → a real journal file (appended to when it exists). */
async function writeJournal(file: string, exportData: string | Buffer): Promise<void> {
  const r = await run(JOURNAL_REMOTE, ['-o', file, '-'], { input: exportData as string, timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`systemd-journal-remote failed (${r.code ?? r.signal}): ${r.stderr}`);
}

/** What the real journalctl reads back from `dir` (the last cursor of a unit's entries). */
async function journalCursors(dir: string, unit: string): Promise<string[]> {
  const r = await runOk('journalctl', ['-D', dir, '-m', '-u', unit, '-o', 'json', '--no-pager'], { timeoutMs: 20_000 });
  return r.stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => (JSON.parse(l) as { __CURSOR: string }).__CURSOR);
}

function watchConfig(over: Record<string, unknown>): WatchConfig {
  return watchSchema.parse({ journald: true, format: 'dovecot', ...over });
}

interface Env {
  dir: string;
  map: AccessMap;
  lines: LogLine[];
  logger: Logger;
  watches: JournaldWatch[];
}

async function setup(): Promise<Env> {
  const dir = await mkdtemp(join(tmpdir(), 'rg-journald-'));
  const { logger, lines } = captureLogger();
  const map = await openAccessMap({
    type: 'lmdb',
    path: join(dir, 'map'),
    grace: GRACE,
    mynetworks: new CidrSet(['127.0.0.0/8']),
    neverAuthorize: new CidrSet([]),
    clock: systemClock,
    logger: silentLogger(),
  });
  return { dir, map, lines, logger, watches: [] };
}

async function teardown(env: Env): Promise<void> {
  for (const w of env.watches) await w.stop().catch(() => undefined);
  await env.map.close().catch(() => undefined);
  await rm(env.dir, { recursive: true, force: true });
}

function newWatch(env: Env, w: WatchConfig, over: Partial<JournaldWatchOptions> = {}): JournaldWatch {
  const jw = new JournaldWatch({ watch: w, parser: parserFor(w, 'none')(), map: env.map, clock: systemClock, logger: env.logger, grace: GRACE, backoffMs: FAST, ...over });
  env.watches.push(jw);
  return jw;
}

async function ips(map: AccessMap): Promise<string[]> {
  return (await map.list()).map((g) => g.ip).sort();
}

async function grantOf(map: AccessMap, ip: string): Promise<Grant | undefined> {
  return map.lookup(ip);
}

/**
 * A fake journalctl: run N (1, 2, ...) records its argv to args.N, prints err.N to stderr and out.N to
 * stdout, then exits with exit.N when that file exists, else waits like `-f` does (until SIGTERM).
 */
async function fakeJournalctl(dir: string, runs: Array<{ out?: string; err?: string; exit?: number }>): Promise<string> {
  const script = join(dir, 'journalctl');
  await writeFile(
    script,
    `#!/bin/sh
d='${dir}'
n=$(cat "$d/count" 2>/dev/null || echo 0); n=$((n+1)); echo "$n" > "$d/count"
printf '%s\\n' "$@" > "$d/args.$n"
[ -f "$d/err.$n" ] && cat "$d/err.$n" >&2
[ -f "$d/out.$n" ] && cat "$d/out.$n"
[ -f "$d/exit.$n" ] && exit "$(cat "$d/exit.$n")"
exec sleep 60
`,
  );
  await chmod(script, 0o755);
  for (const [i, r] of runs.entries()) {
    if (r.out !== undefined) await writeFile(join(dir, `out.${i + 1}`), r.out);
    if (r.err !== undefined) await writeFile(join(dir, `err.${i + 1}`), r.err);
    if (r.exit !== undefined) await writeFile(join(dir, `exit.${i + 1}`), String(r.exit));
  }
  return script;
}

async function fakeArgs(dir: string, n: number): Promise<string[] | undefined> {
  try {
    return (await readFile(join(dir, `args.${n}`), 'utf8')).split('\n').filter((a) => a !== '');
  } catch {
    return undefined;
  }
}

/** One line as `journalctl -o json` prints it. */
function jsonEntry(fields: Record<string, unknown>): string {
  return JSON.stringify({ SYSLOG_IDENTIFIER: 'dovecot', _PID: '3336', _SYSTEMD_UNIT: 'dovecot.service', ...fields });
}

function loginMessage(ip: string, user = 'alice', session = 'S1'): string {
  return `imap-login: Login: user=<${user}>, method=PLAIN, rip=${ip}, lip=192.0.2.1, mpid=7, TLS, session=<${session}>`;
}

describe('journald: decoding journalctl JSON', () => {
  const ts = '1795291134038391';
  test('string MESSAGE, identifier, pid, time in ms, cursor', () => {
    const d = decodeJournalLine(JSON.stringify({ MESSAGE: 'hello', SYSLOG_IDENTIFIER: 'dovecot', _PID: '42', __REALTIME_TIMESTAMP: ts, __CURSOR: 's=1;i=2' }));
    assert.deepEqual(d, { kind: 'entry', entry: { time: 1795291134038, ident: 'dovecot', pid: 42, message: 'hello' }, cursor: 's=1;i=2' });
  });
  test('MESSAGE as bytes (not UTF-8) is decoded with replacement characters', () => {
    const bytes = [...Buffer.from('user=<caf'), 0xe9, ...Buffer.from('>')];
    const d = decodeJournalLine(JSON.stringify({ MESSAGE: bytes, SYSLOG_IDENTIFIER: 'dovecot', __REALTIME_TIMESTAMP: ts }));
    assert.equal(d.kind, 'entry');
    assert.equal(d.kind === 'entry' && d.entry.message, 'user=<caf\uFFFD>');
  });
  test('null, repeated or missing MESSAGE: skipped, cursor kept', () => {
    for (const m of [null, ['a', 'b'], [[104], [105]], { x: 1 }, [300]]) {
      const d = decodeJournalLine(JSON.stringify({ MESSAGE: m, SYSLOG_IDENTIFIER: 'dovecot', __REALTIME_TIMESTAMP: ts, __CURSOR: 'c1' }));
      assert.deepEqual(d.kind === 'skip' && d.cursor, 'c1', JSON.stringify(m));
    }
    assert.equal(decodeJournalLine(JSON.stringify({ __REALTIME_TIMESTAMP: ts, __CURSOR: 'c1' })).kind, 'skip');
  });
  test('identifier: _COMM fallback; repeated identifier skipped; none at all is "" (fails an ident filter)', () => {
    const comm = decodeJournalLine(JSON.stringify({ MESSAGE: 'm', _COMM: 'pop3-login', SYSLOG_PID: '7', __REALTIME_TIMESTAMP: ts }));
    assert.deepEqual(comm.kind === 'entry' && [comm.entry.ident, comm.entry.pid], ['pop3-login', 7]);
    assert.equal(decodeJournalLine(JSON.stringify({ MESSAGE: 'm', SYSLOG_IDENTIFIER: ['dovecot', 'x'], __REALTIME_TIMESTAMP: ts })).kind, 'skip');
    const none = decodeJournalLine(JSON.stringify({ MESSAGE: 'm', __REALTIME_TIMESTAMP: ts }));
    assert.equal(none.kind === 'entry' && none.entry.ident, '');
  });
  test('malformed: not JSON, not an object, no or bad timestamp; bad cursors are ignored', () => {
    for (const l of ['{', 'junk', '[]', '"s"', 'null', JSON.stringify({ MESSAGE: 'm' }), JSON.stringify({ MESSAGE: 'm', __REALTIME_TIMESTAMP: '-5' }), JSON.stringify({ MESSAGE: 'm', __REALTIME_TIMESTAMP: 1 })]) {
      assert.equal(decodeJournalLine(l).kind, 'malformed', l);
    }
    const d = decodeJournalLine(JSON.stringify({ MESSAGE: 'm', __REALTIME_TIMESTAMP: ts, __CURSOR: 'a\nb' }));
    assert.equal(d.kind === 'entry' && d.cursor, undefined);
  });
  test('state key and journalctl arguments', () => {
    assert.equal(journalStateKey({}), 'journald:all');
    assert.equal(journalStateKey({ unit: 'dovecot.service', identifier: 'dovecot', journal_directory: '/var/log/journal' }), 'journald:unit=dovecot.service;identifier=dovecot;directory=/var/log/journal');
    assert.deepEqual(journalctlArgs({ unit: 'dovecot.service' }, { sinceSec: 1000.7 }), ['-f', '-o', 'json', '--no-pager', '--no-tail', '-u', 'dovecot.service', '--since=@1000']);
    assert.deepEqual(journalctlArgs({ identifier: 'dovecot', journal_directory: '/j' }, { cursor: 's=1;i=2' }), ['-f', '-o', 'json', '--no-pager', '--no-tail', '-D', '/j', '-m', '-t', 'dovecot', '--after-cursor=s=1;i=2']);
  });
});

describe('journald: a real journal (systemd-journal-remote + journalctl)', () => {
  before(async () => {
    for (const [bin, pkg] of [
      [JOURNAL_REMOTE, 'systemd-journal-remote'],
      ['/usr/bin/journalctl', 'systemd'],
    ] as const) {
      await access(bin, fsConstants.X_OK).catch(() => {
        throw new Error(`${bin} is missing: apt-get install ${pkg}`);
      });
    }
    // the format registry is another module's; make sure it is the real one
    assert.equal(getFormat('dovecot').name, 'dovecot');
  });

  test('grants for the successful logins only, at their own time; hostile and forged lines grant nothing wrong', { timeout: 60_000 }, async () => {
    const env = await setup();
    try {
      const now = Date.now();
      const jdir = join(env.dir, 'journal');
      await runOk('mkdir', ['-p', jdir]);
      const binary = binaryMessageEntry(usAt(now, -80), 6_000_000, Buffer.concat([Buffer.from('imap-login: Login: user=<caf'), Buffer.from([0xe9]), Buffer.from('>, method=PLAIN, rip=192.0.2.11, lip=192.0.2.1, mpid=6, TLS, session=<bin>')]));
      await writeJournal(join(jdir, 'test.journal'), Buffer.concat([Buffer.from(await fixtureExport(now)), binary]));
      // the journal is real and holds every entry, old and forged ones included
      const all = await runOk('journalctl', ['-D', jdir, '-o', 'json', '--no-pager'], { timeoutMs: 20_000 });
      assert.equal(all.stdout.trim().split('\n').length, 7);
      assert.match(all.stdout, /"MESSAGE":\[105,109,97,112/, 'journalctl prints the non-UTF-8 MESSAGE as bytes');

      const w = watchConfig({ unit: 'dovecot.service', journal_directory: jdir });
      const jw = newWatch(env, w);
      await jw.start();
      const want = ['192.0.2.11', '192.0.2.7', '192.0.2.9', '2001:db8::25'];
      await waitFor('the four grants', async () => (JSON.stringify(await ips(env.map)) === JSON.stringify(want) ? true : undefined));
      const cursors = await journalCursors(jdir, 'dovecot.service');
      await waitFor('the last cursor saved', async () => ((await env.map.getState(journalStateKey(w))) as { cursor?: string } | undefined)?.cursor === cursors.at(-1));
      await sleep(300); // nothing else arrives late
      assert.deepEqual(await ips(env.map), want);

      const alice = (await grantOf(env.map, '192.0.2.7'))!;
      assert.equal(alice.firstSeen, now - 120_000, 'the grant counts from the entry’s own time');
      assert.equal(alice.expires, alice.lastSeen + GRACE * 1000);
      assert.deepEqual([alice.user, alice.service, alice.source, alice.count], ['alice', 'pop3', 'dovecot:journald', 1]);
      assert.equal((await grantOf(env.map, '192.0.2.9'))!.user, 'x>, method=PLAIN, rip=6.6.6.6', 'the hostile username is only a username');
      assert.equal((await grantOf(env.map, '192.0.2.11'))!.user, 'caf\uFFFD');
      assert.equal((await grantOf(env.map, '2001:db8::25'))!.firstSeen, now - 90_000);
      for (const never of ['6.6.6.6', '198.51.100.66', '192.0.2.50']) assert.equal(await grantOf(env.map, never), undefined, never);
      assert.equal(jw.counters.malformed, 0);
      assert.equal(jw.loginCounters.logins, 4);
      assert.equal(env.lines.filter((l) => l.level === 'error').length, 0, JSON.stringify(env.lines.filter((l) => l.level === 'error')));
    } finally {
      await teardown(env);
    }
  });

  test('follows new entries promptly; a restart resumes after the saved cursor, losing and repeating nothing', { timeout: 60_000 }, async () => {
    const env = await setup();
    try {
      const now = Date.now();
      const jdir = join(env.dir, 'journal');
      await runOk('mkdir', ['-p', jdir]);
      await writeJournal(join(jdir, 'test.journal'), await fixtureExport(now));
      const w = watchConfig({ unit: 'dovecot.service', journal_directory: jdir });
      const first = newWatch(env, w);
      await first.start();
      await waitFor('the initial grants', async () => ((await env.map.list()).length === 3 ? true : undefined));

      // a new journal file in the directory, while journalctl -f runs; from a new boot (or another host feeding
      // journal-remote): `-f` alone would only show the boot that was latest when it started
      const t1 = Date.now();
      const reboot = { _BOOT_ID: 'a1b2c3d4e5f60718293a4b5c6d7e8f90', _MACHINE_ID: '11223344556677889900aabbccddeeff', __MONOTONIC_TIMESTAMP: '1000' };
      await writeJournal(join(jdir, 'second.journal'), exportEntry({ __REALTIME_TIMESTAMP: usAt(t1, 0).toString(), ...reboot, MESSAGE: loginMessage('192.0.2.20', 'carol', 'L1') }));
      const seen = await waitFor('the followed grant', () => grantOf(env.map, '192.0.2.20'), 10_000);
      assert.equal(seen.firstSeen, t1);
      assert.ok(Date.now() - t1 < 5_000, `grant appeared ${Date.now() - t1} ms after the entry was written`);
      // appended to the first file too
      const t2 = Date.now();
      await writeJournal(join(jdir, 'test.journal'), exportEntry({ __REALTIME_TIMESTAMP: usAt(t2, 0).toString(), __MONOTONIC_TIMESTAMP: '7500000', MESSAGE: loginMessage('192.0.2.7', 'alice', 'L2') }));
      await waitFor('alice again', async () => ((await grantOf(env.map, '192.0.2.7'))?.count === 2 ? true : undefined));
      await first.stop();

      // written while relaygate is stopped
      const t3 = Date.now();
      await writeJournal(join(jdir, 'third.journal'), exportEntry({ __REALTIME_TIMESTAMP: usAt(t3, 0).toString(), __MONOTONIC_TIMESTAMP: '8000000', MESSAGE: loginMessage('192.0.2.21', 'dave', 'L3') }));
      const second = newWatch(env, w);
      await second.start();
      await waitFor('the entry written while stopped', () => grantOf(env.map, '192.0.2.21'));
      const cursors = await journalCursors(jdir, 'dovecot.service');
      await waitFor('the last cursor saved', async () => ((await env.map.getState(journalStateKey(w))) as { cursor?: string } | undefined)?.cursor === cursors.at(-1));
      await sleep(500);
      assert.equal(second.loginCounters.logins, 1, 'only the new entry was read after the restart');
      assert.equal((await grantOf(env.map, '192.0.2.20'))!.count, 1);
      assert.equal((await grantOf(env.map, '192.0.2.9'))!.count, 1);
      assert.equal((await grantOf(env.map, '192.0.2.7'))!.count, 2);
      assert.equal((await grantOf(env.map, '192.0.2.21'))!.count, 1);
    } finally {
      await teardown(env);
    }
  });

  test('a saved cursor journalctl rejects is dropped: it starts from the last grace seconds instead', { timeout: 60_000 }, async () => {
    const env = await setup();
    try {
      const jdir = join(env.dir, 'journal');
      await runOk('mkdir', ['-p', jdir]);
      await writeJournal(join(jdir, 'test.journal'), await fixtureExport(Date.now()));
      const w = watchConfig({ identifier: 'dovecot', journal_directory: jdir });
      await env.map.setState(journalStateKey(w), { cursor: 'not-a-cursor' });
      const jw = newWatch(env, w);
      await jw.start();
      // identifier only: the forged `logger -t dovecot` line does get through (see the Security note)
      await waitFor('grants after the rejected cursor', async () => ((await env.map.list()).length === 4 ? true : undefined));
      assert.ok(await grantOf(env.map, '198.51.100.66'));
      assert.ok(env.lines.some((l) => l.event === 'journald_cursor_rejected'));
      const exit = env.lines.find((l) => l.event === 'journald_exit')!;
      assert.match(String(exit.stderr), /cursor/i);
      assert.equal(exit.code, 1);
    } finally {
      await teardown(env);
    }
  });
});

describe('journald: journalctl misbehaving (fake journalctl)', () => {
  let fakeDir = '';
  before(async () => {
    fakeDir = await mkdtemp(join(tmpdir(), 'rg-fakejctl-'));
  });
  after(async () => {
    await rm(fakeDir, { recursive: true, force: true });
  });

  test('malformed lines are skipped and logged (bounded); the valid ones count; the arguments are right', { timeout: 30_000 }, async () => {
    const env = await setup();
    try {
      const dir = await mkdtemp(join(fakeDir, 'm-'));
      const now = Date.now();
      const junk = Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? `garbage line ${i} \u0007` : '{"MESSAGE": "unterminated'));
      const out = [
        ...junk.slice(0, 20),
        jsonEntry({ MESSAGE: loginMessage('192.0.2.30'), __REALTIME_TIMESTAMP: usAt(now, -5).toString(), __CURSOR: 'fake-1' }),
        '[1,2,3]',
        jsonEntry({ MESSAGE: null, __REALTIME_TIMESTAMP: usAt(now, -4).toString(), __CURSOR: 'fake-2' }),
        jsonEntry({ MESSAGE: loginMessage('198.51.100.1'), SYSLOG_IDENTIFIER: ['dovecot', 'evil'], __REALTIME_TIMESTAMP: usAt(now, -4).toString(), __CURSOR: 'fake-3' }),
        jsonEntry({ MESSAGE: loginMessage('198.51.100.2'), SYSLOG_IDENTIFIER: 'evil', __REALTIME_TIMESTAMP: usAt(now, -4).toString(), __CURSOR: 'fake-4' }),
        ...junk.slice(20),
        jsonEntry({ MESSAGE: loginMessage('2001:db8::31', 'bob', 'S2'), __REALTIME_TIMESTAMP: usAt(now, -3).toString(), __CURSOR: 'fake-5' }),
        '{"MESSAGE":"cut short by a dying journalctl", "__REALT',
      ].join('\n');
      const bin = await fakeJournalctl(dir, [{ out }]);
      const w = watchConfig({ unit: 'dovecot.service' });
      const jw = newWatch(env, w, { journalctl: bin });
      await jw.start();
      await waitFor('the two valid logins', async () => ((await ips(env.map)).length === 2 ? true : undefined));
      await waitFor('cursor fake-5 saved', async () => ((await env.map.getState('journald:unit=dovecot.service')) as { cursor?: string } | undefined)?.cursor === 'fake-5');
      assert.deepEqual(await ips(env.map), ['192.0.2.30', '2001:db8::31']);
      assert.equal(jw.counters.malformed, 41);
      const logged = env.lines.filter((l) => l.event === 'journald_malformed');
      assert.equal(logged.length, 10, 'at most 10 malformed lines logged a minute');
      assert.ok(logged.every((l) => l.level === 'warn' && String(l.sample ?? '').length <= 120));
      const args = (await fakeArgs(dir, 1))!;
      assert.deepEqual(args.slice(0, -1), ['-f', '-o', 'json', '--no-pager', '--no-tail', '-u', 'dovecot.service']);
      const since = Number(/^--since=@(\d+)$/.exec(args.at(-1)!)?.[1]);
      assert.ok(Math.abs(since - (now / 1000 - GRACE)) < 30, `since ${since}`);
      await jw.stop();

      // the next start resumes after the saved cursor
      const again = newWatch(env, w, { journalctl: bin });
      await again.start();
      const args2 = await waitFor('the second journalctl', () => fakeArgs(dir, 2));
      assert.equal(args2.at(-1), '--after-cursor=fake-5');
      await again.stop();
    } finally {
      await teardown(env);
    }
  });

  test('journalctl dying: error logged with code and stderr, restarted after the saved cursor with back-off', { timeout: 30_000 }, async () => {
    const env = await setup();
    try {
      const dir = await mkdtemp(join(fakeDir, 'd-'));
      const now = Date.now();
      const bin = await fakeJournalctl(dir, [
        { out: `${jsonEntry({ MESSAGE: loginMessage('192.0.2.40'), __REALTIME_TIMESTAMP: usAt(now, -2).toString(), __CURSOR: 'c-40' })}\n`, err: 'Failed to iterate through journal: Bad message\n', exit: 1 },
        { out: `${jsonEntry({ MESSAGE: loginMessage('192.0.2.41'), __REALTIME_TIMESTAMP: usAt(now, -1).toString(), __CURSOR: 'c-41' })}\n` },
      ]);
      const jw = newWatch(env, watchConfig({}), { journalctl: bin });
      await jw.start();
      await waitFor('both grants', async () => ((await ips(env.map)).length === 2 ? true : undefined));
      const exit = env.lines.find((l) => l.event === 'journald_exit')!;
      assert.equal(exit.level, 'error');
      assert.equal(exit.code, 1);
      assert.match(String(exit.stderr), /Bad message/);
      assert.match(exit.msg, /Bad message/);
      assert.equal(exit.restart_in_ms, FAST.min);
      assert.ok(env.lines.some((l) => l.event === 'journald_stderr' && l.level === 'warn' && /Bad message/.test(String(l.line))));
      assert.equal((await fakeArgs(dir, 2))!.at(-1), '--after-cursor=c-40');
      assert.equal((await grantOf(env.map, '192.0.2.40'))!.count, 1);
      const t = Date.now();
      await jw.stop();
      assert.ok(Date.now() - t < 5_000, 'stop() ends the following journalctl promptly');
    } finally {
      await teardown(env);
    }
  });

  test('journalctl missing: error logged, retried with growing back-off, no crash; stop() still works', { timeout: 30_000 }, async () => {
    const env = await setup();
    try {
      const jw = newWatch(env, watchConfig({ unit: 'dovecot.service' }), { journalctl: '/nonexistent/journalctl' });
      await jw.start();
      await waitFor('four failed starts', () => env.lines.filter((l) => l.event === 'journald_exit').length >= 4 || undefined);
      const exits = env.lines.filter((l) => l.event === 'journald_exit');
      assert.ok(exits.every((l) => l.level === 'error' && /ENOENT|could not be started/.test(l.msg)));
      assert.deepEqual(
        exits.slice(0, 4).map((l) => l.restart_in_ms),
        [50, 100, 200, 200],
      );
      const t = Date.now();
      await jw.stop();
      assert.ok(Date.now() - t < 2_000);
      const count = env.lines.filter((l) => l.event === 'journald_exit').length;
      await sleep(400);
      assert.equal(env.lines.filter((l) => l.event === 'journald_exit').length, count, 'no restart after stop()');
      await jw.stop(); // twice is harmless
    } finally {
      await teardown(env);
    }
  });

  test('a failing store: the cursor does not advance, the batch is retried, no login is lost', { timeout: 30_000 }, async () => {
    const env = await setup();
    try {
      const dir = await mkdtemp(join(fakeDir, 's-'));
      const now = Date.now();
      const bin = await fakeJournalctl(dir, [{ out: `${jsonEntry({ MESSAGE: loginMessage('192.0.2.50'), __REALTIME_TIMESTAMP: usAt(now, -2).toString(), __CURSOR: 'c-50' })}\n` }]);
      let failures = 3;
      const real = env.map;
      const flaky: AccessMap = Object.create(real) as AccessMap;
      flaky.recordMany = async (logins, state) => {
        if (failures > 0) {
          failures--;
          throw new Error('MDB_MAP_FULL (injected)');
        }
        return real.recordMany(logins, state);
      };
      flaky.getState = (k) => real.getState(k);
      const jw = newWatch(env, watchConfig({}), { journalctl: bin, map: flaky });
      await jw.start();
      await waitFor('the grant after the store recovers', () => grantOf(real, '192.0.2.50'));
      // the watcher notes the cursor when the batch's commit has returned, a moment after the grant is visible
      await waitFor('the watcher to note the saved cursor', () => jw.savedCursor === 'c-50' || undefined);
      assert.equal(failures, 0);
      assert.equal(env.lines.filter((l) => l.event === 'journald_record_failed').length, 3);
      assert.deepEqual(await real.getState('journald:all'), { cursor: 'c-50' });
      assert.equal(jw.savedCursor, 'c-50');
    } finally {
      await teardown(env);
    }
  });

  test('stop() while the store keeps failing: returns, and the cursor stays before the unrecorded entry', { timeout: 30_000 }, async () => {
    const env = await setup();
    try {
      const dir = await mkdtemp(join(fakeDir, 'f-'));
      const bin = await fakeJournalctl(dir, [{ out: `${jsonEntry({ MESSAGE: loginMessage('192.0.2.60'), __REALTIME_TIMESTAMP: usAt(Date.now(), -2).toString(), __CURSOR: 'c-60' })}\n` }]);
      const real = env.map;
      const broken: AccessMap = Object.create(real) as AccessMap;
      broken.recordMany = async () => {
        throw new Error('store down (injected)');
      };
      broken.getState = (k) => real.getState(k);
      const jw = newWatch(env, watchConfig({}), { journalctl: bin, map: broken });
      await jw.start();
      await waitFor('a failed write', () => env.lines.some((l) => l.event === 'journald_record_failed') || undefined);
      const t = Date.now();
      await jw.stop();
      assert.ok(Date.now() - t < 5_000);
      assert.equal(await real.getState('journald:all'), undefined);
      assert.equal(jw.savedCursor, undefined);
      assert.equal(await grantOf(real, '192.0.2.60'), undefined);
    } finally {
      await teardown(env);
    }
  });
});
