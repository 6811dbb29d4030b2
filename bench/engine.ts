// Benchmark of the decision engine: decisions/s for the default 4-restriction relay list
// (permit_mynetworks, permit_sasl_authenticated, permit_pop_before_smtp, reject_unauth_destination) with a
// mixed stream of clients — a mynetworks hit, a SASL user, a grant hit, a relay reject — against an
// in-memory grant stub, beside a baseline of the same number of awaited calls of a trivial async function
// measured in the same run. A second figure builds and writes every log line (pino to a null stream).
// N = 1,000,000 decisions (100,000 with `quick`). Target: >= 200,000 decisions/s.
// Run: `npm run bench -- engine [--quick]` or directly `tsx bench/engine.ts [--quick]`.
//
// Security: synthetic requests only; nothing is opened but the engine.

import { Writable } from 'node:stream';
import { createEngine } from '../src/engine/index.ts';
import type { DecisionRequest, Engine } from '../src/engine/index.ts';
import { CidrSet } from '../src/net/index.ts';
import { createLogger, silentLogger, type Logger } from '../src/log/logger.ts';
import type { Grant } from '../src/store/types.ts';
import type { BenchResult } from './types.ts';

export type { BenchResult } from './types.ts';

const TARGET = 200_000;
const GRANTS = 10_000;
const NOW = Date.UTC(2026, 10, 21, 10, 0, 0);

function grantIp(i: number): string {
  return `10.1.${(i >>> 8) & 255}.${i & 255}`;
}

async function buildEngine(logger: Logger): Promise<Engine> {
  const grants = new Map<string, Grant>();
  for (let i = 0; i < GRANTS; i++) {
    const ip = grantIp(i);
    grants.set(ip, { ip, user: `user${i}`, service: 'imap', source: 'bench', firstSeen: NOW, lastSeen: NOW, expires: NOW + 1_800_000, count: 1 });
  }
  return createEngine({
    relayRestrictions: ['permit_mynetworks', 'permit_sasl_authenticated', 'permit_pop_before_smtp', 'reject_unauth_destination'],
    senderRestrictions: [],
    mynetworks: new CidrSet(['127.0.0.0/8', '[::1]/128', '192.168.0.0/16']),
    mydestination: ['localhost', 'example.com'],
    relayDomains: ['relay.example'],
    senderLoginMaps: [],
    grants: {
      async lookup(ip: string, now: number) {
        const g = grants.get(ip);
        return g !== undefined && g.expires > now ? g : undefined;
      },
    },
    clock: () => NOW,
    logger,
  });
}

/** A fixed rotation of the four client kinds, prepared up front so the loop measures the engine only. */
function requests(): DecisionRequest[] {
  const out: DecisionRequest[] = [];
  for (let i = 0; i < 4096; i++) {
    const base = { stage: 'rcpt' as const, protocol: 'ESMTP', helo: 'client.example', sender: `u${i}@example.com`, recipient: `r${i}@remote.example` };
    switch (i % 4) {
      case 0:
        out.push({ ...base, clientIp: `192.168.${(i >>> 8) & 255}.${i & 255}` }); // mynetworks hit
        break;
      case 1:
        out.push({ ...base, clientIp: `198.51.100.${i & 255}`, saslUser: `u${i}`, saslMethod: 'PLAIN' }); // SASL
        break;
      case 2:
        out.push({ ...base, clientIp: grantIp(i % GRANTS) }); // POP-before-SMTP grant
        break;
      default:
        out.push({ ...base, clientIp: `203.0.113.${i & 255}` }); // relay attempt: rejected
    }
  }
  return out;
}

async function rate(n: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  for (let i = 0; i < Math.min(n, 20_000); i++) await fn(i); // warm-up: let V8 optimize
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await fn(i);
  const s = Number(process.hrtime.bigint() - start) / 1e9;
  return n / s;
}

export async function benchEngine(opts: { quick?: boolean }): Promise<BenchResult[]> {
  const n = opts.quick ? 100_000 : 1_000_000;
  const reqs = requests();
  const mask = reqs.length - 1;

  const trivial = async (i: number) => reqs[i & mask];
  const baseline = await rate(n, trivial);

  const silent = await buildEngine(silentLogger());
  const decisions = await rate(n, (i) => silent.decide(reqs[i & mask]!));
  await silent.close();

  let bytes = 0;
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      cb();
    },
  });
  const logged = await buildEngine(createLogger({ level: 'info', destination: sink }));
  const withLogs = await rate(n, (i) => logged.decide(reqs[i & mask]!));
  await logged.close();

  const base = { name: 'trivial async call', value: baseline, unit: 'calls/s' };
  return [
    {
      name: 'engine decide (4 restrictions, mixed clients, silent logger)',
      value: decisions,
      unit: 'decisions/s',
      baseline: base,
      ratio: decisions / baseline,
      target: `>= ${TARGET.toLocaleString('en-US')}/s`,
      pass: decisions >= TARGET,
      notes: `${n.toLocaleString('en-US')} decisions: 1/4 mynetworks, 1/4 SASL, 1/4 grant hit, 1/4 relay reject; grants in an in-memory stub`,
    },
    {
      name: 'engine decide with every log line written (pino, info)',
      value: withLogs,
      unit: 'decisions/s',
      baseline: base,
      ratio: withLogs / baseline,
      notes: `${(bytes / n).toFixed(0)} bytes of JSON log per decision`,
    },
  ];
}
