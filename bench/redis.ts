// Benchmarks of the Redis access map against a private redis-server (Debian package, loopback, free port,
// no persistence), each beside baselines measured in the same run:
//   1. grant lookups/s, one at a time (an SMTP node with one client)   beside: the LMDB store; raw GET/s
//   2. grant lookups/s, 32 in flight (a busy node; node-redis pipelines) beside: the LMDB store; raw GET/s
//   3. logins recorded/s through recordMany (the merge script)         beside: the LMDB store
//   4. sweep of N expired grants (chunked scripts) and the longest lookup stall meanwhile
// N = 100,000 grants (20,000 with `quick`); every loop is bounded by N. Lookups use the same keys on both
// stores: half hits, half misses, in a fixed pseudo-random order.
// Run: `npm run bench -- redis [--quick]`.
//
// Security: scratch data only: a redis-server bound to 127.0.0.1 in a temp directory, killed afterwards.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient } from 'redis';
import { openLmdbAccessMap } from '../src/store/lmdb-map.ts';
import { openRedisAccessMap } from '../src/store/redis-map.ts';
import type { AccessMap, LoginEvent } from '../src/store/types.ts';
import { CidrSet } from '../src/net/index.ts';
import { manualClock } from '../src/clock.ts';
import { silentLogger } from '../src/log/logger.ts';
import type { BenchResult } from './types.ts';

const BATCH = 5_000;
const GRACE_S = 1800;
const CONCURRENCY = 32;
/** relaygate's work per lookup (normalize, decode, deadline timer) may cost at most half of a bare GET */
const RAW_TARGET = 0.5;

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

function ipOf(i: number, miss = false): string {
  return `${miss ? 11 : 10}.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** A private redis-server; resolves once it answers PING with PONG (bounded). */
async function startRedisServer(dir: string): Promise<{ url: string; child: ChildProcess }> {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'], { stdio: 'ignore' });
  const failed = new Promise<never>((_, reject) => child.once('error', (e) => reject(new Error(`cannot start redis-server (apt-get install redis-server): ${e.message}`))));
  failed.catch(() => undefined);
  const url = `redis://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    const c = createClient({ url, socket: { reconnectStrategy: false, connectTimeout: 500 } });
    c.on('error', () => undefined);
    try {
      await Promise.race([c.connect(), failed]);
      const pong = await c.ping();
      c.destroy();
      if (pong === 'PONG') return { url, child };
    } catch (err) {
      c.destroy();
      if (child.exitCode !== null) throw new Error(`redis-server exited (${child.exitCode})`);
      if (err instanceof Error && /cannot start redis-server/.test(err.message)) throw err;
    }
    await sleep(50);
  }
  child.kill('SIGKILL');
  throw new Error('redis-server did not answer PING');
}

/** Lookups of `queries` with `concurrency` in flight; returns lookups/s and the hit count. */
async function lookupRate(queries: readonly string[], concurrency: number, lookup: (ip: string) => Promise<unknown>): Promise<{ rate: number; hits: number }> {
  let next = 0;
  let hits = 0;
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (next < queries.length) {
      const q = queries[next++]!;
      if ((await lookup(q)) !== undefined) hits++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { rate: (queries.length * 1000) / (performance.now() - t0), hits };
}

export async function benchRedis(opts: { quick?: boolean } = {}): Promise<BenchResult[]> {
  const n = opts.quick ? 20_000 : 100_000;
  const label = `${n / 1000}k`;
  const q = opts.quick ? 20_000 : 100_000;
  const dir = await mkdtemp(join(tmpdir(), 'relaygate-bench-redis-'));
  const start = 1_700_000_000_000;
  const clock = manualClock(start);
  const results: BenchResult[] = [];
  const common = { grace: GRACE_S, mynetworks: new CidrSet(['127.0.0.0/8']), neverAuthorize: new CidrSet(['0.0.0.0/8']), clock, logger: silentLogger() };
  let server: { url: string; child: ChildProcess } | undefined;
  const maps: AccessMap[] = [];
  let raw: ReturnType<typeof createClient> | undefined;
  try {
    server = await startRedisServer(dir);
    const redisMap = await openRedisAccessMap({ url: server.url, keyPrefix: 'bench:', nodeName: 'bench', timeoutMs: 5000, ...common });
    maps.push(redisMap);
    const lmdbMap = await openLmdbAccessMap({ path: join(dir, 'lmdb'), mapSize: 2 ** 30, ...common });
    maps.push(lmdbMap);
    raw = createClient({ url: server.url });
    raw.on('error', () => undefined);
    await raw.connect();

    // ---- 3. record/s (fills both stores for the lookups) ----
    const logins: LoginEvent[] = [];
    for (let i = 0; i < n; i++) logins.push({ ip: ipOf(i), user: `user${i}`, service: 'imap', source: 'bench', at: start });
    const recordRate = async (map: AccessMap): Promise<number> => {
      const t0 = performance.now();
      for (let i = 0; i < n; i += BATCH) {
        const rs = await map.recordMany(logins.slice(i, i + BATCH));
        if (!rs.every((r) => r.recorded)) throw new Error('bench: a login was refused');
      }
      return (n * 1000) / (performance.now() - t0);
    };
    const redisRecord = await recordRate(redisMap);
    const lmdbRecord = await recordRate(lmdbMap);
    results.push({
      name: `redis record/s via recordMany (${label} new grants, batches of ${BATCH})`,
      value: redisRecord,
      unit: 'logins/s',
      baseline: { name: 'lmdb store record/s', value: lmdbRecord, unit: 'logins/s' },
      ratio: redisRecord / lmdbRecord,
      notes: 'one Lua script per batch: read, merge, SET PX and ZADD per IP, atomically',
    });

    // ---- 1 and 2. lookups/s ----
    const rnd = prng(42);
    const queries: string[] = [];
    for (let i = 0; i < q; i++) queries.push(ipOf(Math.floor(rnd() * n), rnd() < 0.5));
    for (const c of [1, CONCURRENCY]) {
      let bestRedis = 0;
      let bestLmdb = 0;
      let bestRaw = 0;
      let hits = -1;
      for (let round = 0; round < 2; round++) {
        const r = await lookupRate(queries, c, (ip) => redisMap.lookup(ip, start + 1));
        const l = await lookupRate(queries, c, (ip) => lmdbMap.lookup(ip, start + 1));
        const g = await lookupRate(queries, c, async (ip) => (await raw!.get(`bench:grant:${ip}`)) ?? undefined);
        if (r.hits !== l.hits || r.hits !== g.hits) throw new Error(`bench: stores disagree on hits (redis ${r.hits}, lmdb ${l.hits}, raw ${g.hits})`);
        hits = r.hits;
        bestRedis = Math.max(bestRedis, r.rate);
        bestLmdb = Math.max(bestLmdb, l.rate);
        bestRaw = Math.max(bestRaw, g.rate);
      }
      const what = c === 1 ? 'one at a time' : `${c} in flight`;
      results.push({
        name: `redis grant lookups/s (${label} grants, ${what}) vs lmdb store`,
        value: bestRedis,
        unit: 'lookups/s',
        baseline: { name: 'lmdb store lookups/s', value: bestLmdb, unit: 'lookups/s' },
        ratio: bestRedis / bestLmdb,
        notes: `${hits} hits of ${queries.length}; redis pays a loopback round trip per lookup, lmdb reads its memory map`,
      });
      results.push({
        name: `redis grant lookups/s (${label} grants, ${what}) vs raw GET`,
        value: bestRedis,
        unit: 'lookups/s',
        baseline: { name: 'raw node-redis GET/s, same keys', value: bestRaw, unit: 'GET/s' },
        ratio: bestRedis / bestRaw,
        target: `>= ${RAW_TARGET * 100}% of raw GET`,
        pass: bestRedis / bestRaw >= RAW_TARGET,
      });
    }

    // ---- 4. sweep of N expired grants, with a lookup loop measuring the longest stall ----
    const later = start + GRACE_S * 1000 + 1;
    let stop = false;
    let maxStall = 0;
    let probes = 0;
    const probe = (async () => {
      const prnd = prng(7);
      while (!stop && probes < 10_000_000) {
        const t = performance.now();
        await redisMap.lookup(ipOf(Math.floor(prnd() * n)), later);
        maxStall = Math.max(maxStall, performance.now() - t);
        probes++;
      }
    })();
    const t0 = performance.now();
    const swept = await redisMap.sweep(later);
    const sweepMs = performance.now() - t0;
    stop = true;
    await probe;
    if (swept !== n) throw new Error(`bench: swept ${swept} of ${n}`);
    results.push({
      name: `redis sweep of ${label} expired grants (chunks of 1,000 in Lua)`,
      value: (n * 1000) / sweepMs,
      unit: 'grants/s',
      notes: `${Math.round(sweepMs)} ms in all; longest lookup meanwhile ${maxStall.toFixed(1)} ms over ${probes} lookups`,
    });
    results.push({
      name: 'longest lookup during the redis sweep',
      value: maxStall,
      unit: 'ms',
      target: '<= 50 ms',
      pass: maxStall <= 50,
    });
  } finally {
    for (const m of maps) await m.close().catch(() => undefined);
    raw?.destroy();
    server?.child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
  return results;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { formatResults } = await import('./format.ts');
  process.stdout.write(`${formatResults(await benchRedis({ quick: process.argv.includes('--quick') }))}\n`);
}
