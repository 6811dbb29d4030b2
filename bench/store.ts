// Benchmarks of the LMDB access map, each beside a baseline on raw lmdb-js measured in the same run:
//   1. lookups/s over N grants, random mix of hits and misses   (baseline: raw lmdb get/s, same keys)
//   2. record/s batched through recordMany                       (baseline: raw lmdb put/s, batched)
//   3. sweep of N expired grants: total time and the longest pause a concurrent lookup loop sees
//      (baseline: deleting the same N keys the naive way, every remove queued in one event turn)
// N = 1,000,000 (100,000 with `quick`). Every phase is bounded by N, so a run takes well under a minute.
// Run: `npm run bench -- store [--quick]` or directly `tsx bench/store.ts [--quick]`.
//
// Security: scratch data only, in a fresh directory under os.tmpdir(), removed afterwards.

import { open as openLmdb, type RootDatabase } from 'lmdb';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openLmdbAccessMap, type LmdbAccessMap } from '../src/store/lmdb-map.ts';
import type { LoginEvent } from '../src/store/types.ts';
import { CidrSet } from '../src/net/index.ts';
import { manualClock } from '../src/clock.ts';
import { silentLogger } from '../src/log/logger.ts';
import type { BenchResult } from './types.ts';

export type { BenchResult } from './types.ts';

const BATCH = 5_000;
const GRACE_S = 1800;
const MAP_SIZE = 2 ** 30;
const PAUSE_TARGET_MS = 50;
const LOOKUP_TARGET = 0.5;

/** Deterministic PRNG (mulberry32): the same query mix every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Distinct client addresses: 10.0.0.0/8 for stored grants, 11.0.0.0/8 for misses. */
function ipOf(i: number, miss = false): string {
  return `${miss ? 11 : 10}.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`;
}

interface RawGrant {
  user: string;
  service: string;
  source: string;
  firstSeen: number;
  lastSeen: number;
  expires: number;
  count: number;
}

function openRaw(path: string): RootDatabase<RawGrant, string> {
  // Plain lmdb-js as anyone would use it: default msgpack values, ordered-binary string keys.
  return openLmdb<RawGrant, string>({ path, noSubdir: false, mapSize: MAP_SIZE });
}

function rate(count: number, ms: number): number {
  return (count * 1000) / ms;
}

/** Runs `work` while a setImmediate loop does one lookup per turn; reports the longest gap between turns. */
async function withPauseProbe(work: () => Promise<unknown>, probe: () => void): Promise<{ totalMs: number; maxGapMs: number; turns: number }> {
  let stop = false;
  let last = performance.now();
  let maxGap = 0;
  let turns = 0;
  const turn = (): void => {
    const t = performance.now();
    if (t - last > maxGap) maxGap = t - last;
    last = t;
    turns++;
    probe();
    if (!stop) setImmediate(turn);
  };
  setImmediate(turn);
  const t0 = performance.now();
  await work();
  const totalMs = performance.now() - t0;
  stop = true;
  await new Promise((r) => setImmediate(r));
  return { totalMs, maxGapMs: maxGap, turns };
}

export async function benchStore(opts: { quick?: boolean } = {}): Promise<BenchResult[]> {
  const n = opts.quick ? 100_000 : 1_000_000;
  const label = n >= 1_000_000 ? `${n / 1_000_000}M` : `${n / 1000}k`;
  const base = await mkdtemp(join(tmpdir(), 'relaygate-bench-'));
  const start = 1_700_000_000_000;
  const clock = manualClock(start);
  const results: BenchResult[] = [];
  let map: LmdbAccessMap | undefined;
  let raw: RootDatabase<RawGrant, string> | undefined;
  try {
    const mapOptions = {
      path: join(base, 'map'),
      grace: GRACE_S,
      mynetworks: new CidrSet(['127.0.0.0/8']),
      neverAuthorize: new CidrSet(['0.0.0.0/8']),
      clock,
      logger: silentLogger(),
      mapSize: MAP_SIZE,
    };
    map = await openLmdbAccessMap(mapOptions);
    raw = openRaw(join(base, 'raw'));

    // ---- 2. record/s (run first: it also fills both stores for the lookups) ----
    const logins: LoginEvent[] = [];
    for (let i = 0; i < n; i++) logins.push({ ip: ipOf(i), user: `user${i}`, service: 'imap', source: 'bench', at: start });
    let t0 = performance.now();
    for (let i = 0; i < n; i += BATCH) {
      const rs = await map.recordMany(logins.slice(i, i + BATCH));
      if (!rs.every((r) => r.recorded)) throw new Error('bench: a login was refused');
    }
    const mapRecordMs = performance.now() - t0;
    t0 = performance.now();
    for (let i = 0; i < n; i += BATCH) {
      let last: Promise<boolean> | undefined;
      for (let j = i; j < Math.min(n, i + BATCH); j++) {
        // Queued puts of one event turn are committed by lmdb-js in one transaction on its write thread.
        last = raw.put(ipOf(j), { user: `user${j}`, service: 'imap', source: 'bench', firstSeen: start, lastSeen: start, expires: start + GRACE_S * 1000, count: 1 });
      }
      await last;
    }
    const rawPutMs = performance.now() - t0;
    const recordRate = rate(n, mapRecordMs);
    const putRate = rate(n, rawPutMs);
    results.push({
      name: `record/s via recordMany (${label} new grants, batches of ${BATCH})`,
      value: recordRate,
      unit: 'logins/s',
      baseline: { name: 'raw lmdb put/s (batched)', value: putRate, unit: 'puts/s' },
      ratio: recordRate / putRate,
      notes: 'each login is a read + grant put + expiry-index put in one write transaction; raw is one put',
    });

    // ---- 1. lookups/s, random hits and misses ----
    const rnd = prng(42);
    const queries: string[] = [];
    let expectedHits = 0;
    for (let i = 0; i < n; i++) {
      const hit = rnd() < 0.5;
      if (hit) expectedHits++;
      queries.push(ipOf(Math.floor(rnd() * n), !hit));
    }
    const now = start + 1000;
    const lookupMap = async (): Promise<number> => {
      let hits = 0;
      const t = performance.now();
      for (const q of queries) if ((await map!.lookup(q, now)) !== undefined) hits++;
      const ms = performance.now() - t;
      if (hits !== expectedHits) throw new Error(`bench: map found ${hits} grants, expected ${expectedHits}`);
      return rate(queries.length, ms);
    };
    const lookupRaw = (): number => {
      let hits = 0;
      const t = performance.now();
      for (const q of queries) if (raw!.get(q) !== undefined) hits++;
      const ms = performance.now() - t;
      if (hits !== expectedHits) throw new Error(`bench: raw found ${hits} keys, expected ${expectedHits}`);
      return rate(queries.length, ms);
    };
    // Alternate three rounds and keep each side's best, so neither profits from a warmer cache or JIT.
    let bestMap = 0;
    let bestRaw = 0;
    for (let round = 0; round < 3; round++) {
      bestRaw = Math.max(bestRaw, lookupRaw());
      bestMap = Math.max(bestMap, await lookupMap());
    }
    const lookupRatio = bestMap / bestRaw;
    results.push({
      name: `map lookups/s (${label} grants, 50% hits, random order)`,
      value: bestMap,
      unit: 'lookups/s',
      baseline: { name: 'raw lmdb get/s (same keys, msgpack)', value: bestRaw, unit: 'gets/s' },
      ratio: lookupRatio,
      target: `>= ${LOOKUP_TARGET * 100}% of raw`,
      pass: lookupRatio >= LOOKUP_TARGET,
      notes: 'map: awaited async lookup() with normalizeIp, expiry check and full decode of hits; raw: sync get()',
    });

    // ---- restart: reopening a store of N grants, including the child-process verification walk ----
    await map.close();
    t0 = performance.now();
    map = await openLmdbAccessMap({ ...mapOptions, verify: false });
    const reopenPlainMs = performance.now() - t0;
    await map.close();
    t0 = performance.now();
    map = await openLmdbAccessMap(mapOptions);
    const reopenMs = performance.now() - t0;
    const rawPath = join(base, 'raw');
    await raw.close();
    t0 = performance.now();
    raw = openRaw(rawPath);
    raw.get(ipOf(0));
    const rawOpenMs = performance.now() - t0;
    results.push({
      name: `reopen with ${label} grants (header check + verification walk in a child process)`,
      value: reopenMs,
      unit: 'ms',
      baseline: { name: 'raw lmdb open()', value: rawOpenMs, unit: 'ms' },
      notes: `${reopenPlainMs.toFixed(1)} ms with verify: false; the walk reads every page once so a damaged store is refused at start-up instead of crashing the daemon`,
    });
    if ((await map.lookup(queries[0]!, now)) === undefined && queries[0]!.startsWith('10.')) throw new Error('bench: grant lost across reopen');

    // ---- stats() cost, with everything active and then everything expired ----
    t0 = performance.now();
    const active = await map.stats(now);
    const statsActiveMs = performance.now() - t0;
    if (active.active !== n) throw new Error(`bench: stats says ${active.active} active, expected ${n}`);
    const later = start + GRACE_S * 1000 + 1;
    t0 = performance.now();
    const pending = await map.stats(later);
    const statsPendingMs = performance.now() - t0;
    if (pending.expiredPending !== n || pending.active !== 0) throw new Error('bench: stats before the sweep are wrong');
    results.push({
      name: `stats() with ${label} active / ${label} expired pending`,
      value: statsActiveMs,
      unit: 'ms',
      notes: `active count from LMDB's B-tree stats (O(1)); ${statsPendingMs.toFixed(1)} ms when all ${label} are expired (counts the expired index range, O(expired))`,
    });

    // ---- 3. sweep of N expired grants under a concurrent lookup loop ----
    const probeRnd = prng(7);
    const idle = await withPauseProbe(() => new Promise((r) => setTimeout(r, 200)), () => void map!.lookup(ipOf(Math.floor(probeRnd() * n)), later));
    let swept = 0;
    const sweep = await withPauseProbe(
      async () => {
        swept = await map!.sweep(later);
      },
      () => void map!.lookup(ipOf(Math.floor(probeRnd() * n)), now),
    );
    if (swept !== n) throw new Error(`bench: swept ${swept}, expected ${n}`);
    const after = await map.stats(later);
    if (after.active !== 0 || after.expiredPending !== 0) throw new Error('bench: grants left after the sweep');

    const rawDb = raw;
    const naive = await withPauseProbe(
      async () => {
        // The obvious raw way: walk every key and queue its removal in one event turn.
        let last: Promise<boolean> | undefined;
        for (const key of rawDb.getKeys({})) last = rawDb.remove(key);
        await last;
      },
      () => void rawDb.get(ipOf(Math.floor(probeRnd() * n))),
    );
    if (rawDb.getKeysCount() !== 0) throw new Error('bench: raw keys left after removal');

    results.push({
      name: `sweep of ${label} expired grants: total time`,
      value: sweep.totalMs,
      unit: 'ms',
      baseline: { name: 'raw lmdb: remove the same keys, all queued at once', value: naive.totalMs, unit: 'ms' },
      ratio: sweep.totalMs / naive.totalMs,
      notes: `time ratio (lower is better); ${Math.round(rate(n, sweep.totalMs)).toLocaleString('en-US')} grants/s, chunks of 2,000 per transaction`,
    });
    results.push({
      name: `sweep of ${label}: longest pause seen by a concurrent lookup loop`,
      value: sweep.maxGapMs,
      unit: 'ms',
      baseline: { name: 'raw lmdb, all removes queued at once', value: naive.maxGapMs, unit: 'ms' },
      target: `<= ${PAUSE_TARGET_MS} ms`,
      pass: sweep.maxGapMs <= PAUSE_TARGET_MS,
      notes: `${sweep.turns.toLocaleString('en-US')} lookup turns during the sweep; idle event loop max gap ${idle.maxGapMs.toFixed(1)} ms`,
    });
    return results;
  } finally {
    await map?.close().catch(() => undefined);
    await raw?.close().catch(() => undefined);
    await rm(base, { recursive: true, force: true });
  }
}
