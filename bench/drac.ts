// Benchmark of the DRAC server (src/feeds/drac.ts): DRAC ADD calls per second over UDP, the way DRAC clients
// send them (one 44-byte v1 call per login, answered with a 28-byte ADD_SUCCESS), from a load client in a
// separate Node process that keeps a fixed window of calls outstanding (256: a POP/IMAP farm with that
// many logins in flight).
//   1. ADD calls/s with a real LMDB access map: each call parsed, rate-limited, access-checked, written
//      (micro-batched: one recordMany per event-loop turn, up to 4 in flight, replies after the commit) and
//      logged at info level (to /dev/null), as in production. Target: >= 5,000 calls/s, 30 x the load of
//      10,000 open sessions whose Dovecot DRAC plugin re-sends every 60 s. (rpc.dracd does one fsync per ADD.)
//   2. the same with an in-memory map: the protocol path without the disk. Target: >= 25% of the baseline.
//   baseline: the same load client against a trivial UDP echo server (reads the datagram, answers 28 bytes)
//             in this same process, measured in the same run: the cost of Node's UDP path alone.
// The load client spreads its calls over 20,000 requested addresses (10.0.0.1 ...), sends from 127.0.0.1,
// and runs for a fixed time (5 s; 2 s with --quick); a call unanswered within 200 ms is counted lost and
// replaced, so the run always ends. After each run the map must hold the grants and every answer must be
// ADD_SUCCESS (checked, so a server that answered without recording would be caught).
// Run: `npm run bench -- drac [--quick]`.
//
// Security: loopback only (127.0.0.1, port 0), scratch LMDB map in a fresh temp directory, removed afterwards.

import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAccessMap, type AccessMap, type Grant, type LoginEvent, type RecordResult } from '../src/store/index.ts';
import { CidrSet } from '../src/net/index.ts';
import { systemClock } from '../src/clock.ts';
import { createLogger } from '../src/log/logger.ts';
import { startDracServer } from '../src/feeds/drac.ts';
import type { BenchResult } from './types.ts';

const WINDOW = 256;
const DISTINCT = 20_000;
const RATIO_TARGET = 0.25;
/** 30 × the load of 10,000 open sessions whose Dovecot DRAC plugin re-sends every 60 s (167 calls/s) */
const ABSOLUTE_TARGET = 5000;

// The load client, run as `node -e` (plain JS: no build step, its own process and event loop).
// argv: port seconds window distinct; prints one JSON line {answered, lost, seconds, ok}.
const LOAD_CLIENT = String.raw`
const dgram = require('node:dgram');
const [port, seconds, window, distinct] = process.argv.slice(1).map(Number);
const sock = dgram.createSocket('udp4');
const pending = new Map();
let xid = 1, answered = 0, lost = 0, ok = 0, sent = 0;
const template = Buffer.alloc(44);
[0, 0, 2, 900101, 1, 1, 0, 0, 0, 0].forEach((w, i) => template.writeUInt32BE(w, i * 4));
function send() {
  const id = xid++;
  const k = sent++ % distinct;
  const call = Buffer.from(template); // a buffer per datagram: dgram sends asynchronously, after this returns
  call.writeUInt32BE(id >>> 0, 0);
  call.writeUInt32BE(((10 << 24) | (k + 1)) >>> 0, 40); // 10.0.0.1, 10.0.0.2, ...
  pending.set(id, Date.now());
  sock.send(call, port, '127.0.0.1');
}
sock.on('message', (m) => {
  if (m.length < 4) return;
  const id = m.readUInt32BE(0);
  if (!pending.delete(id)) return;
  answered++;
  if (m.length >= 28 && m.readUInt32BE(24) === 0) ok++;
  if (Date.now() < deadline) send();
});
const start = Date.now();
const deadline = start + seconds * 1000;
sock.bind({ address: '127.0.0.1', port: 0 }, () => {
  for (let i = 0; i < window; i++) send();
});
const sweep = setInterval(() => {
  const now = Date.now();
  for (const [id, t] of pending) if (now - t > 200) { pending.delete(id); lost++; if (now < deadline) send(); }
  if (now >= deadline + 300) {
    clearInterval(sweep);
    sock.close();
    process.stdout.write(JSON.stringify({ answered, lost, ok, seconds: (Math.min(now, deadline) - start) / 1000 }) + '\n');
  }
}, 50);
`;

interface LoadResult {
  answered: number;
  lost: number;
  ok: number;
  seconds: number;
}

function runLoad(port: number, seconds: number): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', LOAD_CLIENT, String(port), String(seconds), String(WINDOW), String(DISTINCT)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const kill = setTimeout(() => child.kill('SIGKILL'), (seconds + 30) * 1000);
    child.on('close', (code) => {
      clearTimeout(kill);
      if (code !== 0) return reject(new Error(`load client exited ${code}: ${err}`));
      try {
        resolve(JSON.parse(out.trim()) as LoadResult);
      } catch {
        reject(new Error(`load client printed ${JSON.stringify(out)} ${err}`));
      }
    });
  });
}

/** The baseline: read a datagram, answer 28 bytes carrying its xid. */
async function echoServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sock = createSocket('udp4');
  const reply = Buffer.alloc(28);
  sock.on('message', (m, r) => {
    if (m.length < 4) return;
    m.copy(reply, 0, 0, 4);
    sock.send(reply, r.port, r.address);
  });
  await new Promise<void>((res) => sock.bind({ address: '127.0.0.1', port: 0 }, () => res()));
  return { port: sock.address().port, close: () => new Promise<void>((res) => sock.close(() => res())) };
}

/** A map that records in memory: the DRAC path without the disk (parse, checks, batching, logging). */
function memoryMap(): AccessMap {
  const grants = new Map<string, Grant>();
  const record = async (l: LoginEvent): Promise<RecordResult> => {
    const now = Date.now();
    const g: Grant = { ip: l.ip, user: l.user ?? null, service: l.service ?? null, source: l.source, firstSeen: now, lastSeen: now, expires: now + 1_800_000, count: 1 };
    grants.set(l.ip, g);
    return { recorded: true, grant: g };
  };
  const unused = (): never => {
    throw new Error('not used by the DRAC server');
  };
  return {
    record,
    recordMany: async (logins) => Promise.all(logins.map(record)),
    getState: unused,
    setState: unused,
    lookup: async (ip) => grants.get(ip),
    delete: async (ip) => grants.delete(ip),
    list: async () => [...grants.values()],
    sweep: async () => 0,
    stats: unused,
    close: async () => undefined,
  };
}

interface DracRun {
  load: LoadResult;
  grants: number;
}

async function runDrac(map: AccessMap, logFd: number, seconds: number): Promise<DracRun> {
  const server = await startDracServer({
    listenUdp: [{ host: '127.0.0.1', port: 0 }],
    listenTcp: [],
    allow: new CidrSet(['127.0.0.1/32']),
    rpcbind: false,
    rateLimit: 1_000_000_000, // one load client from one address: the limit would otherwise be the figure
    map,
    logger: createLogger({ level: 'info', destination: logFd }), // every ADD logged, as in production
    clock: systemClock,
  });
  let load: LoadResult;
  try {
    load = await runLoad(server.udp[0]!.port, seconds);
  } finally {
    await server.stop();
  }
  return { load, grants: (await map.list()).length };
}

export async function benchDrac(opts: { quick?: boolean } = {}): Promise<BenchResult[]> {
  const seconds = opts.quick ? 2 : 5;
  const dir = await mkdtemp(join(tmpdir(), 'rg-bench-drac-'));
  const devnull = await open('/dev/null', 'w');
  try {
    const echo = await echoServer();
    let base: LoadResult;
    try {
      base = await runLoad(echo.port, seconds);
    } finally {
      await echo.close();
    }
    const lmdb = await openAccessMap({
      type: 'lmdb',
      path: join(dir, 'map'),
      grace: 1800,
      mynetworks: new CidrSet(['127.0.0.0/8']),
      neverAuthorize: new CidrSet(['0.0.0.0/8', '224.0.0.0/4']),
      clock: systemClock,
      logger: createLogger({ level: 'silent' }),
    });
    let disk: DracRun;
    try {
      disk = await runDrac(lmdb, devnull.fd, seconds);
    } finally {
      await lmdb.close();
    }
    const mem = await runDrac(memoryMap(), devnull.fd, seconds);

    const baseRate = base.answered / base.seconds;
    const baseline = { name: 'UDP echo, same client', value: baseRate, unit: 'replies/s' };
    const figure = (r: DracRun) => r.load.answered / r.load.seconds;
    // every answered call was an ADD_SUCCESS, and (lost calls aside) each distinct address became a grant
    const sane = (r: DracRun) => r.load.ok === r.load.answered && r.grants >= Math.min(DISTINCT, r.load.ok) - r.load.lost;
    const notes = (r: DracRun) => `${r.load.answered} answered (${r.load.ok} ADD_SUCCESS), ${r.load.lost} lost in ${r.load.seconds.toFixed(1)} s, window ${WINDOW}; map holds ${r.grants} grants; echo: ${base.answered} answered, ${base.lost} lost`;
    return [
      {
        name: 'drac ADD over UDP (LMDB map, fsync per batch)',
        value: figure(disk),
        unit: 'calls/s',
        baseline,
        ratio: figure(disk) / baseRate,
        target: `>= ${ABSOLUTE_TARGET.toLocaleString('en-US')} calls/s`,
        pass: figure(disk) >= ABSOLUTE_TARGET && sane(disk),
        notes: notes(disk),
      },
      {
        name: 'drac ADD over UDP (in-memory map: protocol path)',
        value: figure(mem),
        unit: 'calls/s',
        baseline,
        ratio: figure(mem) / baseRate,
        target: `>= ${RATIO_TARGET * 100}% of echo`,
        pass: figure(mem) / baseRate >= RATIO_TARGET && sane(mem),
        notes: notes(mem),
      },
    ];
  } finally {
    await devnull.close();
    await rm(dir, { recursive: true, force: true });
  }
}
