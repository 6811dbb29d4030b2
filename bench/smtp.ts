// Benchmark of the SMTP AUTH gateway (issue 4, "Performance"): ~1 KB messages over loopback, relayed through
// relaygate to a minimal sink, beside the same load sent straight to the sink and through Haraka 3.3, all in
// the same run. Separate processes, so no two of them share an event loop:
//
//   bench/smtp.ts (this file: orchestrates, reads /proc)  ─ IPC ─┬─ load generator  (bench/peers/smtp-load.ts)
//                                                                 └─ sink            (bench/peers/sink.ts: raw sink
//                                                                                     + stock smtp-server)
//   relaygate: the real daemon, `relaygate run -c FILE`, compiled by tsc as installed (bench/peers/relaygate.ts)
//   relaygate again with relayhost_pool = 20 instead of the default 8 (the only difference)
//   Haraka 3.3.4, one process (nodes=0), installed on first use  (bench/peers/haraka.ts)
//   Haraka 3.3.4 again with TCP_NODELAY forced on (not stock; bench/peers/haraka-nodelay.cjs): stock Haraka
//     waits for a delayed ACK on every forwarded message, and this variant shows Haraka without that stall
//
// Clients (all loopback; the load generator binds the source address):
//   127.0.0.20  holds a POP-before-SMTP grant in relaygate (an IMAP login in the Dovecot log its watcher
//               follows) and is in Haraka's relay_acl_allow: relays by address on both, without AUTH;
//   127.0.0.30  has neither: relays with AUTH PLAIN once per connection (relaygate passwd-file, Haraka
//               auth/flat_file, both cleartext);
//   127.0.0.40  has neither and does not authenticate: a probe checks that every server refuses it (5xx);
//   127.0.1.1-25  the 1,000 idle connections (40 per address, under relaygate's per-IP limit of 50).
// Every message is MAIL FROM:<sender@local.example>, RCPT TO:<rcpt@remote.example> (a remote domain: the
// relay decision is exercised), ~1 KB body; one command per round trip on every path (see smtp-load.ts).
//
// Figures: with 20 reused connections — msgs/s and p50/p99 latency (MAIL sent → 250 after the body) for
// direct, relaygate (grant, AUTH), Haraka (ACL, AUTH, ACL +TCP_NODELAY) and stock smtp-server alone; with a
// new connection per message (20 concurrent) — msgs/s; with 1 connection — the latency relaygate adds to an
// unloaded hop; resident memory (VmRSS) of relaygate and Haraka with 1,000 idle connections, once right after
// start and once after all the load (V8 keeps the heap it grew under load). Before measuring, every server
// gets an unmeasured warm-up load. Each figure is the best of `rounds` rounds, the targets alternated within
// a round. After every load the sink's message count is compared with the 250s the clients got: a figure
// whose messages did not all arrive says so. The first row's notes carry the machine's load average: the
// figures are only as steady as the machine is quiet.
// Targets (issue 4): >= 1,000 msgs/s relayed; >= 3x Haraka's rate; RSS < 150 MB with 1,000 idle connections.
//
// `quick`: 0.3 s warm-up + 1.5 s window per figure, one round; otherwise 1 s + 4 s, two rounds (~4 min).
// Run: `npm run bench -- smtp [--quick]`, or `tsx bench/smtp.ts [--quick]`.
//
// Security: everything binds and connects on 127.0.0.1 only (the peers run with bench/peers/
// loopback-guard.cjs preloaded, which blocks DNS and non-loopback connects); scratch data in a fresh
// directory under os.tmpdir(), removed afterwards.

import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BenchResult } from './types.ts';
import { forkTs, ipcRequest, stopChild, vmRss, type Peer } from './peers/process.ts';
import { percentile, type IdleSpec, type LoadReply, type LoadRequest, type LoadResult, type LoadSpec } from './peers/smtp-load.ts';
import type { SinkReply, SinkRequest, SinkStats } from './peers/sink.ts';
import { buildRelaygate, startRelaygate } from './peers/relaygate.ts';
import { ensureHaraka, startHaraka, HARAKA_VERSION } from './peers/haraka.ts';

export type { BenchResult } from './types.ts';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const RATE_TARGET = 1000;
const HARAKA_RATIO_TARGET = 3;
const RSS_LIMIT = 150 * 1024 * 1024;
const CONNECTIONS = 20;
const IDLE_CONNECTIONS = 1000;
const MESSAGE_BYTES = 1024;

const GRANT_CLIENT = '127.0.0.20';
const AUTH_CLIENT = '127.0.0.30';
const STRANGER = '127.0.0.40';
const IDLE_CLIENTS = Array.from({ length: 25 }, (_, i) => `127.0.1.${i + 1}`);
const USER = 'bench';
const PASS = 'bench-secret';

type Mode = 'reuse' | 'per-message' | 'single';

interface Target {
  readonly key: string;
  readonly label: string;
  readonly port: number;
  readonly local: string;
  readonly auth?: { user: string; pass: string } | undefined;
  /** which sink counter receives its messages */
  readonly sink: 'raw' | 'stock';
}

interface Figure {
  readonly rate: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
  readonly errorSamples: string[];
  readonly acknowledged: number;
  readonly delivered: number;
  /** connections the sink accepted during the load (the gateway's upstream connections; the clients' when direct) */
  readonly sinkConnections: number;
}

const fmtRate = (n: number) => Math.round(n).toLocaleString('en-US');
const fmtMs = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : 'n/a');
const fmtMb = (b: number) => (b / 1024 / 1024).toFixed(1);

function progress(s: string): void {
  process.stderr.write(`  smtp: ${s}\n`);
}

class SinkChild {
  readonly #child: ChildProcess;
  readonly stderr: () => string;
  #id = 0;
  rawPort = 0;
  stockPort = 0;

  constructor() {
    const f = forkTs(join(HERE, 'peers', 'sink.ts'));
    this.#child = f.child;
    this.stderr = f.stderr;
  }

  async ready(): Promise<void> {
    const r = await ipcRequest<SinkRequest, SinkReply & { op: 'ready' }>(this.#child, undefined, (m) => ((m as SinkReply).op === 'ready' ? (m as SinkReply & { op: 'ready' }) : undefined), 30_000, 'sink start');
    this.rawPort = r.rawPort;
    this.stockPort = r.stockPort;
  }

  async stats(): Promise<{ raw: SinkStats; stock: SinkStats }> {
    const id = ++this.#id;
    const msg: SinkRequest = { op: 'stats', id };
    return ipcRequest(this.#child, msg, (m) => {
      const r = m as SinkReply;
      return r.op === 'stats' && r.id === id ? { raw: r.raw, stock: r.stock } : undefined;
    }, 10_000, 'sink stats');
  }

  stop(): Promise<void> {
    return stopChild(this.#child);
  }
}

class LoadChild {
  readonly #child: ChildProcess;
  readonly stderr: () => string;

  constructor() {
    const f = forkTs(join(HERE, 'peers', 'smtp-load.ts'));
    this.#child = f.child;
    this.stderr = f.stderr;
  }

  async ready(): Promise<void> {
    await ipcRequest<LoadRequest, true>(this.#child, undefined, (m) => ((m as LoadReply).op === 'ready' ? true : undefined), 30_000, 'load generator start');
  }

  run(spec: LoadSpec): Promise<LoadResult> {
    const budget = spec.warmupMs + spec.durationMs + spec.replyTimeoutMs * 4 + 10_000;
    return ipcRequest<LoadRequest, LoadResult>(this.#child, { op: 'run', spec }, (m) => {
      const r = m as LoadReply;
      if (r.op === 'failed') throw new Error(`load generator: ${r.error}`);
      return r.op === 'result' ? r.result : undefined;
    }, budget, 'load run');
  }

  idle(spec: IdleSpec): Promise<{ opened: number; errors: number; errorSamples: string[] }> {
    return ipcRequest<LoadRequest, { opened: number; errors: number; errorSamples: string[] }>(this.#child, { op: 'idle', spec }, (m) => {
      const r = m as LoadReply;
      if (r.op === 'failed') throw new Error(`load generator: ${r.error}`);
      return r.op === 'idle-ready' ? { opened: r.opened, errors: r.errors, errorSamples: r.errorSamples } : undefined;
    }, spec.openTimeoutMs + spec.replyTimeoutMs + 10_000, 'idle connections');
  }

  async release(): Promise<void> {
    await ipcRequest<LoadRequest, true>(this.#child, { op: 'release' }, (m) => ((m as LoadReply).op === 'released' ? true : undefined), 10_000, 'release');
  }

  stop(): Promise<void> {
    return stopChild(this.#child);
  }
}

export async function benchSmtp(opts: { quick?: boolean } = {}): Promise<BenchResult[]> {
  const quick = opts.quick === true;
  const warmupMs = quick ? 300 : 1000;
  const durationMs = quick ? 1500 : 4000;
  const rounds = quick ? 1 : 2;
  const load0 = loadavg();
  const base = await mkdtemp(join(tmpdir(), 'relaygate-bench-smtp-'));
  const results: BenchResult[] = [];
  const sink = new SinkChild();
  const load = new LoadChild();
  let relaygate: Peer | undefined;
  let relaygatePool: Peer | undefined;
  let haraka: Peer | undefined;
  let harakaNd: Peer | undefined;
  let harakaWhyNot: string | undefined;

  try {
    await Promise.all([sink.ready(), load.ready()]);
    const build = await buildRelaygate(progress);
    await mkdir(join(base, 'relaygate'));
    relaygate = await startRelaygate({ dir: join(base, 'relaygate'), sinkPort: sink.rawPort, grantClients: [GRANT_CLIENT], user: USER, pass: PASS, clientLimit: IDLE_CONNECTIONS + 200 });
    await mkdir(join(base, 'relaygate-pool'));
    relaygatePool = await startRelaygate({ dir: join(base, 'relaygate-pool'), sinkPort: sink.rawPort, grantClients: [GRANT_CLIENT], user: USER, pass: PASS, clientLimit: IDLE_CONNECTIONS + 200, smtpExtra: [`relayhost_pool = ${CONNECTIONS}`] });
    progress(`relaygate pid ${relaygate.pid} on 127.0.0.1:${relaygate.port} (relayhost_pool = ${CONNECTIONS}: pid ${relaygatePool.pid} on :${relaygatePool.port}); sink on :${sink.rawPort}, stock smtp-server on :${sink.stockPort}`);
    const inst = await ensureHaraka(progress);
    if (inst.ok) {
      try {
        await mkdir(join(base, 'haraka'));
        haraka = await startHaraka({ dir: join(base, 'haraka'), sinkPort: sink.rawPort, relayAllow: [GRANT_CLIENT], user: USER, pass: PASS });
        await mkdir(join(base, 'haraka-nodelay'));
        harakaNd = await startHaraka({ dir: join(base, 'haraka-nodelay'), sinkPort: sink.rawPort, relayAllow: [GRANT_CLIENT], user: USER, pass: PASS, tcpNoDelay: true });
        progress(`Haraka ${HARAKA_VERSION} pid ${haraka.pid} on 127.0.0.1:${haraka.port}; with TCP_NODELAY pid ${harakaNd.pid} on :${harakaNd.port}`);
      } catch (err) {
        harakaWhyNot = `Haraka ${HARAKA_VERSION} did not start: ${(err as Error).message.slice(0, 600)}`;
      }
    } else harakaWhyNot = inst.reason;
    if (harakaWhyNot !== undefined) {
      progress(`Haraka not run: ${harakaWhyNot}`);
      await haraka?.stop();
      haraka = undefined;
    }

    const t = (key: string, label: string, port: number, local: string, auth = false, sinkName: 'raw' | 'stock' = 'raw'): Target => ({
      key,
      label,
      port,
      local,
      auth: auth ? { user: USER, pass: PASS } : undefined,
      sink: sinkName,
    });
    const targets: Record<string, Target> = {
      direct: t('direct', 'direct → sink', sink.rawPort, GRANT_CLIENT),
      stock: t('stock', 'stock smtp-server alone', sink.stockPort, GRANT_CLIENT, false, 'stock'),
      rgGrant: t('rgGrant', 'relaygate, grant client', relaygate.port, GRANT_CLIENT),
      rgAuth: t('rgAuth', 'relaygate, AUTH client', relaygate.port, AUTH_CLIENT, true),
      rgPool: t('rgPool', `relaygate relayhost_pool = ${CONNECTIONS}, grant client`, relaygatePool.port, GRANT_CLIENT),
      ...(haraka && harakaNd
        ? {
            hkAcl: t('hkAcl', 'Haraka, ACL client', haraka.port, GRANT_CLIENT),
            hkAuth: t('hkAuth', 'Haraka, AUTH client', haraka.port, AUTH_CLIENT, true),
            hkNdAcl: t('hkNdAcl', 'Haraka +TCP_NODELAY, ACL client', harakaNd.port, GRANT_CLIENT),
          }
        : {}),
    };

    const spec = (tg: Target, mode: Mode, over: Partial<LoadSpec> = {}): LoadSpec => ({
      host: '127.0.0.1',
      port: tg.port,
      localAddresses: [tg.local],
      connections: mode === 'single' ? 1 : CONNECTIONS,
      perMessage: mode === 'per-message',
      warmupMs,
      durationMs,
      maxMessages: 500_000,
      auth: tg.auth,
      from: 'sender@local.example',
      to: 'rcpt@remote.example',
      messageBytes: MESSAGE_BYTES,
      replyTimeoutMs: 10_000,
      ...over,
    });

    // ---- probes: each path delivers one message; nobody relays for a stranger ----
    for (const tg of Object.values(targets)) {
      let r: LoadResult | undefined;
      // the grant comes from relaygate's log watcher: allow it a moment (bounded) to land
      for (let i = 0; i < 50; i++) {
        r = await load.run(spec(tg, 'single', { warmupMs: 0, durationMs: 10_000, maxMessages: 1 }));
        if (r.acknowledged === 1) break;
        await sleep(100);
      }
      if (r?.acknowledged !== 1) throw new Error(`bench: ${tg.label}: a single message was not accepted: ${r?.errorSamples.join(' | ')}`);
    }
    for (const peer of [relaygate, relaygatePool, haraka, harakaNd]) {
      if (peer === undefined) continue;
      const r = await load.run(spec(t('stranger', 'stranger', peer.port, STRANGER), 'single', { warmupMs: 0, durationMs: 10_000, maxMessages: 1 }));
      if (r.acknowledged !== 0 || !/^RCPT: expected 250, got "5\d\d/.test(r.errorSamples[0] ?? '')) {
        throw new Error(`bench: ${peer.name} did not refuse to relay for ${STRANGER} (no grant, no AUTH): ${r.errorSamples.join(' | ') || 'message accepted'}`);
      }
    }
    progress('probes passed: every path delivers; relaygate and Haraka refuse a stranger (5xx at RCPT)');

    // ---- memory with 1,000 idle connections (VmRSS from /proc) ----
    const rss = async (peer: Peer | undefined) => {
      if (peer === undefined) return undefined;
      await sleep(500);
      const idle = await vmRss(peer.pid);
      const r = await load.idle({ host: '127.0.0.1', port: peer.port, localAddresses: IDLE_CLIENTS, connections: IDLE_CONNECTIONS, replyTimeoutMs: 10_000, openTimeoutMs: 60_000 });
      await sleep(1000);
      const loaded = await vmRss(peer.pid);
      await load.release();
      progress(`${peer.name}: VmRSS ${fmtMb(idle)} MB idle, ${fmtMb(loaded)} MB with ${r.opened} idle connections${r.errors ? ` (${r.errors} failed: ${r.errorSamples[0]})` : ''}`);
      return { idle, loaded, ...r };
    };
    const rgFresh = await rss(relaygate);
    const hkFresh = await rss(haraka);

    const measure = async (tg: Target, mode: Mode, over: Partial<LoadSpec> = {}): Promise<Figure> => {
      const before = await sink.stats();
      const r = await load.run(spec(tg, mode, over));
      // the sink counts on its own socket: give the last forwarded messages a moment (bounded) to be counted
      let delivered = 0;
      let sinkConnections = 0;
      for (let i = 0; i < 20; i++) {
        const after = await sink.stats();
        delivered = after[tg.sink].messages - before[tg.sink].messages;
        sinkConnections = after[tg.sink].connections - before[tg.sink].connections;
        if (delivered >= r.acknowledged) break;
        await sleep(50);
      }
      const sorted = r.latenciesMs.slice().sort((a, b) => a - b);
      return {
        rate: (r.messages * 1000) / r.windowMs,
        p50: percentile(sorted, 50),
        p99: percentile(sorted, 99),
        errors: r.errors,
        errorSamples: r.errorSamples,
        acknowledged: r.acknowledged,
        delivered,
        sinkConnections,
      };
    };

    // ---- warm-up: every server's code paths through the JIT before anything is measured ----
    for (const key of ['rgGrant', 'rgAuth', 'rgPool', 'hkAcl', 'hkAuth', 'hkNdAcl', 'stock']) {
      const tg = targets[key];
      if (tg !== undefined) await measure(tg, 'reuse', { warmupMs: 0, durationMs: quick ? 700 : 2000 });
    }

    const best = new Map<string, Figure>();
    const keep = (key: string, f: Figure) => {
      const prev = best.get(key);
      const errors = f.errors + (prev?.errors ?? 0);
      const errorSamples = [...(prev?.errorSamples ?? []), ...f.errorSamples].slice(0, 5);
      // best rate; but a round that lost a message anywhere leaves its mark on the figure
      const chosen = prev === undefined || f.rate > prev.rate ? f : prev;
      const lost = prev !== undefined && (prev.delivered !== prev.acknowledged || f.delivered !== f.acknowledged);
      best.set(key, { ...chosen, errors, errorSamples, ...(lost ? { delivered: -1 } : {}) });
    };
    const plan: Array<[Mode, string[]]> = [
      ['reuse', ['direct', 'rgGrant', 'hkAcl', 'rgAuth', 'hkAuth', 'rgPool', 'hkNdAcl', 'stock']],
      ['per-message', ['direct', 'rgGrant', 'hkAcl', 'hkNdAcl', 'stock']],
      ['single', ['direct', 'rgGrant', 'hkAcl', 'hkNdAcl']],
    ];
    for (let round = 0; round < rounds; round++) {
      for (const [mode, keys] of plan) {
        for (const key of keys) {
          const tg = targets[key];
          if (tg === undefined) continue;
          const f = await measure(tg, mode);
          progress(`round ${round + 1}/${rounds} ${mode} ${tg.label}: ${fmtRate(f.rate)} msgs/s, p50 ${fmtMs(f.p50)} ms, p99 ${fmtMs(f.p99)} ms${f.errors ? `, ${f.errors} errors` : ''}`);
          keep(`${mode}:${key}`, f);
        }
      }
    }

    const rgAfter = await rss(relaygate);
    const hkAfter = await rss(haraka);
    const load1 = loadavg();

    // ---- the table ----
    const fig = (mode: Mode, key: string) => best.get(`${mode}:${key}`);
    const health = (f: Figure) =>
      `${f.errors === 0 ? 'no errors' : `${f.errors} errors (${f.errorSamples.join(' | ')})`}; ` +
      (f.delivered === -1 ? 'MISMATCH in some round between 250s and messages the sink received' : `sink received ${f.delivered.toLocaleString('en-US')} of ${f.acknowledged.toLocaleString('en-US')} messages acknowledged${f.delivered === f.acknowledged ? '' : ' — MISMATCH'}`) +
      `, over ${f.sinkConnections.toLocaleString('en-US')} sink connection(s)`;
    const sound = (f: Figure | undefined) => f !== undefined && f.errors === 0 && f.delivered === f.acknowledged;
    const lat = (f: Figure) => `p50 ${fmtMs(f.p50)} ms, p99 ${fmtMs(f.p99)} ms`;
    const rateRow = (name: string, f: Figure, baseFig?: { name: string; f: Figure }, extra = ''): BenchResult => ({
      name,
      value: f.rate,
      unit: 'msgs/s',
      ...(baseFig ? { baseline: { name: baseFig.name, value: baseFig.f.rate, unit: 'msgs/s' }, ratio: f.rate / baseFig.f.rate } : {}),
      notes: `${lat(f)}; ${health(f)}${extra}`,
    });
    const notRun = (name: string, unit: string, target?: string): BenchResult => ({ name: `${name} — NOT RUN`, value: 0, unit, ...(target ? { target } : {}), notes: harakaWhyNot ?? 'not run' });

    const dR = fig('reuse', 'direct')!;
    const gR = fig('reuse', 'rgGrant')!;
    const aR = fig('reuse', 'rgAuth')!;
    const sR = fig('reuse', 'stock')!;
    const hR = fig('reuse', 'hkAcl');
    const haR = fig('reuse', 'hkAuth');
    const hnR = fig('reuse', 'hkNdAcl');
    const pR = fig('reuse', 'rgPool')!;
    const baseDirect = { name: 'direct → sink', f: dR };
    const c20 = `${CONNECTIONS} reused conns`;

    results.push(
      rateRow(
        `direct → sink, ${c20}`,
        dR,
        undefined,
        `; the ceiling of this load generator + sink on this machine; load average ${load0.map((x) => x.toFixed(1)).join('/')} at start, ${load1.map((x) => x.toFixed(1)).join('/')} at end (${cpus().length} cores; other work on the machine lowers every figure)`,
      ),
    );
    results.push({
      ...rateRow(`relaygate (grant) → sink, ${c20}`, gR, baseDirect, `; added latency vs direct: p50 +${fmtMs(gR.p50 - dR.p50)} ms, p99 +${fmtMs(gR.p99 - dR.p99)} ms`),
      target: `>= ${fmtRate(RATE_TARGET)} msgs/s`,
      pass: gR.rate >= RATE_TARGET && sound(gR),
    });
    results.push({ name: `  relaygate (grant) p50 latency`, value: gR.p50, unit: 'ms', baseline: { name: 'direct p50', value: dR.p50, unit: 'ms' }, ratio: gR.p50 / dR.p50, notes: `MAIL sent → 250 after the body, ${CONNECTIONS} connections at full speed (queueing included); added +${fmtMs(gR.p50 - dR.p50)} ms` });
    results.push({ name: `  relaygate (grant) p99 latency`, value: gR.p99, unit: 'ms', baseline: { name: 'direct p99', value: dR.p99, unit: 'ms' }, ratio: gR.p99 / dR.p99, notes: `added +${fmtMs(gR.p99 - dR.p99)} ms` });
    results.push({
      ...rateRow(`relaygate (AUTH PLAIN) → sink, ${c20}`, aR, baseDirect, '; AUTH once per connection (passwd-file {PLAIN})'),
      target: `>= ${fmtRate(RATE_TARGET)} msgs/s`,
      pass: aR.rate >= RATE_TARGET && sound(aR),
    });
    const hkNote = '; one process (nodes=0), log level warn; smtp_forward opens a new upstream connection per message (Haraka 3 keeps no pool)';
    if (hR !== undefined) results.push(rateRow(`Haraka (relay ACL) → sink, ${c20}`, hR, baseDirect, hkNote));
    else results.push(notRun(`Haraka (relay ACL) → sink, ${c20}`, 'msgs/s'));
    if (haR !== undefined) results.push(rateRow(`Haraka (AUTH PLAIN) → sink, ${c20}`, haR, baseDirect, '; auth/flat_file, AUTH once per connection'));
    else results.push(notRun(`Haraka (AUTH PLAIN) → sink, ${c20}`, 'msgs/s'));
    const vsHaraka = (name: string, rg: Figure, hk: Figure | undefined, hkName: string, target: boolean, extra = ''): BenchResult =>
      hk === undefined
        ? notRun(name, 'msgs/s', target ? `>= ${HARAKA_RATIO_TARGET}x Haraka` : undefined)
        : {
            name,
            value: rg.rate,
            unit: 'msgs/s',
            baseline: { name: hkName, value: hk.rate, unit: 'msgs/s' },
            ratio: rg.rate / hk.rate,
            ...(target ? { target: `>= ${HARAKA_RATIO_TARGET}x Haraka`, pass: rg.rate >= HARAKA_RATIO_TARGET * hk.rate && sound(rg) && sound(hk) } : {}),
            notes: `relaygate ${(rg.rate / hk.rate).toFixed(2)}x Haraka's rate; latency relaygate ${lat(rg)}, Haraka ${lat(hk)}${extra}`,
          };
    results.push(vsHaraka(`relaygate vs Haraka, address-authorized clients, ${c20}`, gR, hR, 'Haraka (relay ACL)', true, ' (relaygate: POP-before-SMTP grant; Haraka: relay_acl_allow)'));
    results.push(vsHaraka(`relaygate vs Haraka, AUTH PLAIN clients, ${c20}`, aR, haR, 'Haraka (AUTH PLAIN)', true));
    results.push(
      vsHaraka(
        `relaygate vs Haraka +TCP_NODELAY (not stock), ${c20}`,
        gR,
        hnR,
        'Haraka +TCP_NODELAY (ACL)',
        false,
        `; stock Haraka leaves Nagle on and sends each message's final "." in a separate write, so every forwarded message waits for the sink's delayed ACK (~40 ms, see the 1-connection row); this Haraka has TCP_NODELAY forced on by a preload (bench/peers/haraka-nodelay.cjs): the comparison most favourable to Haraka. Haraka +TCP_NODELAY: ${health(hnR ?? gR)}`,
      ),
    );
    results.push(
      rateRow(
        `relaygate (grant), relayhost_pool = ${CONNECTIONS} (default 8), ${c20}`,
        pR,
        baseDirect,
        `; a second daemon, identical but for relayhost_pool. With the default 8 and ${CONNECTIONS} messages in flight, the pool closes every connection beyond 8 when its message is done and opens a new one for the next (sink connections above: ${gR.sinkConnections.toLocaleString('en-US')} for ${gR.acknowledged.toLocaleString('en-US')} messages); here ${pR.sinkConnections.toLocaleString('en-US')}. ${(pR.rate / gR.rate).toFixed(2)}x the default's rate${hR ? `, ${(pR.rate / hR.rate).toFixed(2)}x Haraka` : ''}${hnR ? `, ${(pR.rate / hnR.rate).toFixed(2)}x Haraka +TCP_NODELAY` : ''}`,
      ),
    );
    results.push(rateRow(`stock smtp-server alone, ${c20}`, sR, baseDirect, '; smtp-server 3.21 with its defaults, discarding every message: the ceiling of any gateway built on it (reference, no target)'));

    const dP = fig('per-message', 'direct')!;
    const gP = fig('per-message', 'rgGrant')!;
    const hP = fig('per-message', 'hkAcl');
    const hnP = fig('per-message', 'hkNdAcl');
    const sP = fig('per-message', 'stock')!;
    const cPM = `new connection per message, ${CONNECTIONS} concurrent`;
    const basePM = { name: 'direct → sink', f: dP };
    results.push(rateRow(`direct → sink, ${cPM}`, dP, undefined, '; latency here: connect → 250 after the body'));
    results.push(rateRow(`relaygate (grant) → sink, ${cPM}`, gP, basePM, `; greeting_delay = 0 (the default)${hP ? `; ${(gP.rate / hP.rate).toFixed(2)}x Haraka` : ''}${hnP ? `, ${(gP.rate / hnP.rate).toFixed(2)}x Haraka +TCP_NODELAY` : ''}`));
    if (hP !== undefined) results.push(rateRow(`Haraka (relay ACL) → sink, ${cPM}`, hP, basePM));
    else results.push(notRun(`Haraka (relay ACL) → sink, ${cPM}`, 'msgs/s'));
    if (hnP !== undefined) results.push(rateRow(`Haraka +TCP_NODELAY (not stock) → sink, ${cPM}`, hnP, basePM));
    results.push(rateRow(`stock smtp-server alone, ${cPM}`, sP, basePM, "; smtp-server's built-in 100 ms greeting delay caps each connection at < 10 msgs/s (reference: why relaygate's greeting_delay defaults to 0)"));

    const d1 = fig('single', 'direct')!;
    const g1 = fig('single', 'rgGrant')!;
    const h1 = fig('single', 'hkAcl');
    const hn1 = fig('single', 'hkNdAcl');
    results.push({
      name: `relaygate (grant) p50 latency, 1 connection`,
      value: g1.p50,
      unit: 'ms',
      baseline: { name: 'direct p50, 1 conn', value: d1.p50, unit: 'ms' },
      ratio: g1.p50 / d1.p50,
      notes:
        `unloaded: one client, one message at a time; added by relaygate p50 +${fmtMs(g1.p50 - d1.p50)} ms, p99 +${fmtMs(g1.p99 - d1.p99)} ms (relaygate ${lat(g1)}, ${fmtRate(g1.rate)} msgs/s; direct ${lat(d1)}, ${fmtRate(d1.rate)} msgs/s)` +
        `${h1 ? `; Haraka ${lat(h1)}, ${fmtRate(h1.rate)} msgs/s` : ''}${hn1 ? `; Haraka +TCP_NODELAY ${lat(hn1)}, ${fmtRate(hn1.rate)} msgs/s` : ''}; ${health(g1)}`,
    });

    type Rss = NonNullable<Awaited<ReturnType<typeof rss>>>;
    const rssRow = (who: string, when: string, r: Rss, pid: number, target: boolean): BenchResult => ({
      name: `${who} RSS, ${IDLE_CONNECTIONS.toLocaleString('en-US')} idle connections, ${when}`,
      value: r.loaded / 1024 / 1024,
      unit: 'MB',
      baseline: { name: 'same process, 0 connections', value: r.idle / 1024 / 1024, unit: 'MB' },
      ratio: r.loaded / r.idle,
      ...(target ? { target: '< 150 MB', pass: r.loaded < RSS_LIMIT && r.opened === IDLE_CONNECTIONS } : {}),
      notes: `VmRSS from /proc/${pid}/status 1 s after the last connection opened; ${r.opened} connections open (greeting + EHLO each, from ${IDLE_CLIENTS.length} addresses)${r.errors ? `, ${r.errors} failed: ${r.errorSamples.join(' | ')}` : ''}; ${r.loaded >= r.idle ? '+' : ''}${((r.loaded - r.idle) / Math.max(1, r.opened) / 1024).toFixed(1)} KB per connection${target ? '' : '; reference, no target'}`,
    });
    if (rgFresh !== undefined) results.push(rssRow('relaygate', 'fresh daemon', rgFresh, relaygate.pid, true));
    if (rgAfter !== undefined) results.push(rssRow('relaygate', 'after the load above', rgAfter, relaygate.pid, true));
    if (hkFresh !== undefined && haraka !== undefined) results.push(rssRow('Haraka', 'fresh', hkFresh, haraka.pid, false));
    else results.push(notRun(`Haraka RSS, ${IDLE_CONNECTIONS.toLocaleString('en-US')} idle connections`, 'MB'));
    if (hkAfter !== undefined && haraka !== undefined) results.push(rssRow('Haraka', 'after the load above', hkAfter, haraka.pid, false));

    const blocked = [relaygate, relaygatePool, haraka, harakaNd].flatMap((p) => (p ? p.stderr().split('\n').filter((l) => l.startsWith('loopback-guard:')).map((l) => `${p.name}: ${l}`) : []));
    if (blocked.length > 0) results[0]!.notes += `; LOOPBACK GUARD blocked: ${blocked.join(' | ')}`;
    if (build.typeErrors > 0) results[0]!.notes += `; note: tsc reported ${build.typeErrors} type error(s) in the tree while compiling relaygate (emitted anyway)`;
    return results;
  } finally {
    await Promise.allSettled([relaygate?.stop(), relaygatePool?.stop(), haraka?.stop(), harakaNd?.stop(), load.stop(), sink.stop()]);
    await rm(base, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { formatResults } = await import('./format.ts');
  const results = await benchSmtp({ quick: process.argv.includes('--quick') });
  process.stdout.write(`${formatResults(results)}\n`);
  for (const r of results) if (r.notes) process.stdout.write(`  ${r.name}: ${r.notes}\n`);
}
