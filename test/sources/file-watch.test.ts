// FileWatch: a path or a glob → one tailer per file → LineParser (dovecot, rfc3339) → LoginRecorder → the
// LMDB access map, each file's position saved under its own `tail:<file>` key in the batch's transaction.
// Real files and a real store in a temp directory; every wait is bounded.
import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, mkdtemp, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { openAccessMap, type AccessMap } from '../../src/store/index.ts';
import { CidrSet } from '../../src/net/index.ts';
import { systemClock } from '../../src/clock.ts';
import { silentLogger } from '../../src/log/logger.ts';
import { getFormat } from '../../src/sources/formats/index.ts';
import { LineParser, compileCustomPattern } from '../../src/sources/parser.ts';
import { FileWatch, globToRegExp, PIPELINE, type FileWatchOptions } from '../../src/sources/file-watch.ts';
import { captureLogger } from '../store/contract.ts';
import type { TailPosition } from '../../src/sources/tailer.ts';

let dir: string;
let map: AccessMap;
const watches: FileWatch[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rg-fw-'));
  map = await openAccessMap({
    type: 'lmdb',
    path: join(dir, 'map'),
    grace: 1800,
    mynetworks: new CidrSet(['127.0.0.0/8']),
    neverAuthorize: new CidrSet([]),
    clock: systemClock,
    logger: silentLogger(),
    verify: false,
  });
});
afterEach(async () => {
  for (const w of watches.splice(0)) await w.stop();
  await map.close();
  await rm(dir, { recursive: true, force: true });
});

function ts(): string {
  return new Date().toISOString().replace('Z', '000+00:00');
}
function login(ip: string, user = 'alice'): string {
  return `${ts()} mx dovecot: pop3-login: Login: user=<${user}>, method=PLAIN, rip=${ip}, lip=192.0.2.1, mpid=32388, session=<s+xG7MtgZpV/AAAH>\n`;
}
function noise(): string {
  return `${ts()} mx postfix/smtpd[4242]: connect from unknown[198.51.100.77]\n`;
}

function watchOf(path: string, extra: Partial<FileWatchOptions> = {}): FileWatch {
  const format = getFormat('dovecot');
  const w = new FileWatch({
    path,
    parserFactory: () => new LineParser({ format, prefix: 'rfc3339' }),
    formatName: 'dovecot',
    map,
    clock: systemClock,
    logger: silentLogger(),
    grace: 1800,
    trackLogout: false,
    startAt: 'start',
    pollMs: 50,
    ...extra,
  });
  watches.push(w);
  return w;
}

async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

async function counts(ips: string[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const ip of ips) out[ip] = (await map.lookup(ip))?.count ?? 0;
  return out;
}

test('globToRegExp: *, ?, classes and shell negation, anchored', () => {
  assert.ok(globToRegExp('*.log').test('mail.log'));
  assert.ok(!globToRegExp('*.log').test('mail.log.1'));
  assert.ok(globToRegExp('mail?.log').test('mail2.log'));
  assert.ok(globToRegExp('[ab].log').test('a.log') && !globToRegExp('[ab].log').test('c.log'));
  assert.ok(globToRegExp('[!ab].log').test('c.log') && !globToRegExp('[!ab].log').test('a.log'));
  assert.ok(!globToRegExp('a.log').test('aXlog'), 'a dot is literal');
});

test('a glob follows two files and a third created later; rotated siblings are never followed; one position per file', async () => {
  const a = join(dir, 'a.log');
  const b = join(dir, 'b.log');
  const c = join(dir, 'c.log');
  await writeFile(a, noise() + login('192.0.2.11') + noise());
  await writeFile(b, login('192.0.2.12'));
  // rotated siblings that match the glob: their logins must not be read as files of their own
  await writeFile(`${a}.1`, login('192.0.2.91'));
  await writeFile(`${a}-20261121`, login('192.0.2.92'));
  await writeFile(`${b}.2.gz`, 'not text');
  await writeFile(`${b}.gz`, 'not text');
  await writeFile(`${a}.old`, login('192.0.2.93'));

  const w = watchOf(join(dir, '*.log*'));
  await w.start();
  await w.poll();
  assert.deepEqual(w.files().map((f) => f.file).sort(), [a, b]);
  await waitFor(async () => (await map.lookup('192.0.2.12')) !== undefined, 5000, 'b.log');
  assert.deepEqual(await counts(['192.0.2.11', '192.0.2.12', '192.0.2.91', '192.0.2.92', '192.0.2.93']), {
    '192.0.2.11': 1,
    '192.0.2.12': 1,
    '192.0.2.91': 0,
    '192.0.2.92': 0,
    '192.0.2.93': 0,
  });

  await writeFile(c, login('192.0.2.13'));
  await waitFor(async () => (await map.lookup('192.0.2.13')) !== undefined, 5000, 'the rescan to pick up c.log');
  assert.deepEqual(w.files().map((f) => f.file).sort(), [a, b, c]);

  // a rename rotation of a.log: a.log.1 (a match of the glob) is still not followed by itself
  await appendFile(a, login('192.0.2.14'));
  await rename(a, `${a}.1`);
  await writeFile(a, login('192.0.2.15'));
  await waitFor(async () => (await map.lookup('192.0.2.15')) !== undefined, 5000, 'the new a.log');
  await w.poll();
  await sleep(150); // a few rescans
  assert.deepEqual(w.files().map((f) => f.file).sort(), [a, b, c]);
  assert.deepEqual(await counts(['192.0.2.11', '192.0.2.12', '192.0.2.13', '192.0.2.14', '192.0.2.15', '192.0.2.91']), {
    '192.0.2.11': 1,
    '192.0.2.12': 1,
    '192.0.2.13': 1,
    '192.0.2.14': 1,
    '192.0.2.15': 1,
    '192.0.2.91': 0,
  });

  for (const f of [a, b, c]) {
    const pos = (await map.getState(`tail:${f}`)) as TailPosition;
    const st = await stat(f);
    assert.equal(pos.ino, st.ino, f);
    assert.equal(pos.offset, st.size, f);
  }
  assert.equal(await map.getState(`tail:${a}.1`), undefined);
});

test('overlapping rescans never follow a file twice', async () => {
  await writeFile(join(dir, 'a.log'), login('192.0.2.21'));
  const w = watchOf(join(dir, '*.log'), { pollMs: 3_600_000 });
  await w.start();
  await writeFile(join(dir, 'd.log'), login('192.0.2.22'));
  await Promise.all([w.scan(), w.scan(), w.scan()]);
  await w.poll();
  assert.equal(w.files().length, 2);
  await waitFor(async () => (await map.lookup('192.0.2.22')) !== undefined, 5000, 'd.log');
  assert.deepEqual(await counts(['192.0.2.21', '192.0.2.22']), { '192.0.2.21': 1, '192.0.2.22': 1 });
});

test('a restart resumes every file of a glob at its own saved position: nothing lost, nothing twice', async () => {
  const a = join(dir, 'a.log');
  const b = join(dir, 'b.log');
  await writeFile(a, login('192.0.2.31'));
  await writeFile(b, login('192.0.2.32') + login('192.0.2.33'));
  const w1 = watchOf(join(dir, '*.log'));
  await w1.start();
  await w1.poll();
  await waitFor(async () => (await map.lookup('192.0.2.33')) !== undefined, 5000, 'first run');
  await w1.stop();
  // while stopped: a grows, b is rotated (rename) with a line appended to the old file first
  await appendFile(a, login('192.0.2.34'));
  await appendFile(b, login('192.0.2.35'));
  await rename(b, `${b}.1`);
  await writeFile(b, login('192.0.2.36'));
  const w2 = watchOf(join(dir, '*.log'));
  await w2.start();
  await w2.poll();
  const ips = ['192.0.2.31', '192.0.2.32', '192.0.2.33', '192.0.2.34', '192.0.2.35', '192.0.2.36'];
  await waitFor(async () => Object.values(await counts(ips)).every((n) => n > 0), 5000, 'second run');
  assert.deepEqual(Object.values(await counts(ips)), [1, 1, 1, 1, 1, 1]);
});

test('a single path: the grant appears without an explicit poll (directory watch)', async () => {
  const f = join(dir, 'mail.log');
  await writeFile(f, noise());
  const w = watchOf(f, { pollMs: 3_600_000 });
  await w.start();
  await w.poll();
  await appendFile(f, login('192.0.2.41'));
  await waitFor(async () => (await map.lookup('192.0.2.41')) !== undefined, 3000, 'the watch');
  const g = await map.lookup('192.0.2.41');
  assert.equal(g?.user, 'alice');
  assert.equal(g?.source, `dovecot:${f}`);
});

test('a custom pattern (no needle): every line is parsed, the custom login recorded', async () => {
  const f = join(dir, 'custom.log');
  await writeFile(f, `${ts()} mx dovecot: custom ok for 192.0.2.51\n` + login('192.0.2.52') + noise());
  const format = getFormat('dovecot');
  const custom = compileCustomPattern('^custom ok for (?<ip>[0-9.]+)$');
  const w = watchOf(f, { parserFactory: () => new LineParser({ format, prefix: 'rfc3339', custom }) });
  await w.start();
  await w.poll();
  assert.deepEqual(await counts(['192.0.2.51', '192.0.2.52']), { '192.0.2.51': 1, '192.0.2.52': 1 });
  assert.equal(w.files()[0]!.counters.skipped, 0);
  assert.equal(w.files()[0]!.logins.lines, 3);
});

// ---- a large backlog: batches in flight while earlier ones commit (AccessMap.recordManyIf) ----

/** A log of several reads (of growing size): `n` IPs logging in three times each (~0.8 KB per IP), and noise. */
async function backlog(f: string, n = 3000): Promise<{ ips: string[] }> {
  const ips = Array.from({ length: n }, (_, i) => `10.77.${i >> 8}.${i & 255}`);
  let text = '';
  for (let round = 0; round < 3; round++) for (const ip of ips) text += login(ip, `u${ip}`) + noise();
  await writeFile(f, text);
  return { ips };
}

test('a backlog with a store that writes conditionally: batches overlap, a failed one is retried in order, every login once', async () => {
  const f = join(dir, 'big.log');
  const { ips } = await backlog(f);
  const real = map;
  let inFlight = 0;
  let most = 0;
  let calls = 0;
  /** the positions committed, in commit order */
  const saved: number[] = [];
  // The real store, but slow to answer (the commit happened; only its news is late) and failing once, on
  // the third batch, before writing anything.
  const slow: AccessMap = Object.create(real) as AccessMap;
  slow.recordManyIf = (logins, state, expect) => {
    if (++calls === 3) return Promise.reject(new Error('MDB_MAP_FULL: Environment mapsize limit reached'));
    most = Math.max(most, ++inFlight);
    return real
      .recordManyIf!(logins, state, expect)
      .then((r) => {
        saved.push((Object.values(state)[0] as TailPosition).offset);
        return r;
      })
      .finally(async () => {
        await sleep(15);
        inFlight--;
      });
  };
  const { logger, lines } = captureLogger();
  const w = watchOf(f, { map: slow, logger, retryMs: { min: 20, max: 40 } });
  await w.start();
  await w.poll();
  const [followed] = w.files();
  assert.equal(followed!.counters.lines, 18000);
  assert.ok(most > 1 && most <= PIPELINE, `batches in flight at once: ${most}`);
  const c = await counts(ips);
  assert.deepEqual(new Set(Object.values(c)), new Set([3]), 'each of the 9,000 logins recorded exactly once');
  assert.equal(((await map.getState(`tail:${f}`)) as TailPosition).offset, (await stat(f)).size);
  // The saved position only ever moved forward: no batch committed past the failed one's lines.
  assert.deepEqual(saved, [...saved].sort((a, b) => a - b));
  assert.equal(new Set(saved).size, saved.length);
  // The failed batch is logged and retried; the batches already queued behind it failed only because of
  // it (their conditional write found its position missing): retried once it was in, and not logged.
  assert.equal(lines.filter((l) => l.event === 'watch_record_failed').length, 1, JSON.stringify(lines.filter((l) => l.event === 'watch_record_failed')));
  assert.equal(followed!.logins.logins, 9000);
  assert.equal(followed!.logins.granted, 9000);
});

test('a store without conditional writes (a wrapper): one batch at a time, every login once', async () => {
  const f = join(dir, 'big.log');
  const { ips } = await backlog(f);
  let inFlight = 0;
  let most = 0;
  const plain: AccessMap = {
    record: (l) => map.record(l),
    async recordMany(logins, state) {
      most = Math.max(most, ++inFlight);
      try {
        return await map.recordMany(logins, state);
      } finally {
        await sleep(5);
        inFlight--;
      }
    },
    getState: (k) => map.getState(k),
    setState: (k, v) => map.setState(k, v),
    lookup: (ip, now) => map.lookup(ip, now),
    delete: (ip) => map.delete(ip),
    list: (now) => map.list(now),
    sweep: (now) => map.sweep(now),
    stats: (now) => map.stats(now),
    close: async () => undefined,
  };
  const w = watchOf(f, { map: plain });
  await w.start();
  await w.poll();
  assert.equal(most, 1);
  assert.deepEqual(new Set(Object.values(await counts(ips))), new Set([3]));
  assert.equal(((await map.getState(`tail:${f}`)) as TailPosition).offset, (await stat(f)).size);
});

test('session ends are not even decoded without track_logout; with it they are parsed', async () => {
  const f = join(dir, 'mail.log');
  const logout = `${ts()} mx dovecot: imap(alice)<4242><s+xG7MtgZpV/AAAH>: Disconnected: Logged out in=10 out=20\n`;
  await writeFile(f, login('192.0.2.61') + logout + noise());
  const off = watchOf(f);
  await off.start();
  await off.poll();
  assert.deepEqual([off.files()[0]!.counters.lines, off.files()[0]!.counters.skipped, off.files()[0]!.logins.logouts], [3, 2, 0]);
  await off.stop();
  await map.setState(`tail:${f}`, null); // not a position: read from the start (and expected as such)
  const on = watchOf(f, { trackLogout: true });
  await on.start();
  await on.poll();
  assert.deepEqual([on.files()[0]!.counters.skipped, on.files()[0]!.logins.logouts], [1, 1]);
  // read twice on purpose (position reset): the login both times, and with track_logout its session end
  // refreshes the grant (grace starts at logout)
  assert.equal((await map.lookup('192.0.2.61'))?.count, 3);
});

test('stopped while batches are in flight, restarted: every login of the backlog exactly once', async () => {
  const f = join(dir, 'big.log');
  const { ips } = await backlog(f, 20_000); // ~16 MB: 64 KiB, 256 KiB, 1, 4, 4, 4 ... MiB reads
  const real = map;
  let handed = 0;
  const slow: AccessMap = Object.create(real) as AccessMap;
  slow.recordManyIf = (logins, state, expect) => {
    handed++;
    return real.recordManyIf!(logins, state, expect).then(async (r) => {
      await sleep(30); // the commit is in; its news arrives late, so several batches are in flight
      return r;
    });
  };
  const first = watchOf(f, { map: slow });
  await first.start();
  await waitFor(() => handed >= 2, 5000, 'batches in flight');
  await first.stop();
  const pos = (await map.getState(`tail:${f}`)) as TailPosition;
  assert.ok(pos.offset > 0 && pos.offset < (await stat(f)).size, `stopped part-way (at byte ${pos.offset})`);
  const second = watchOf(f);
  await second.start();
  await second.poll();
  assert.deepEqual(new Set(Object.values(await counts(ips))), new Set([3]), 'nothing lost, nothing twice');
  assert.equal(((await map.getState(`tail:${f}`)) as TailPosition).offset, (await stat(f)).size);
});
