// Prometheus metrics (prom-client), served on the HTTP listener's /metrics.
//
// One process-wide set (`metrics`): the components that make events increment counters directly (engine
// decisions, SASL AUTH, upstream forwarding, feed requests) — an increment is a map lookup and an add, cheap
// enough for every decision. What components already count (lines read, logins seen, grants made per
// source; the map's size; tail lag) is read at scrape time from providers registered by the daemon, so the
// hot paths of the log watchers carry no metric code at all.
// Security: label values are bounded sets chosen by relaygate (source names from the configuration, format
// names, restriction names, results); never a user name, an address or anything a client sent.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** What a running source reports at scrape time (cumulative counts since it started). */
export interface SourceStats {
  /** the source's name in logs and grants: a path, `journald:unit`, `stdin` */
  readonly source: string;
  readonly format: string;
  readonly lines: number;
  readonly logins: number;
  readonly grants: number;
  /** bytes between the end of the file and the position read (files only) */
  readonly lagBytes?: number;
}

export type SourceProvider = () => readonly SourceStats[] | Promise<readonly SourceStats[]>;

/** Size of the access map, read at scrape time. */
export type MapSizeProvider = () => Promise<number>;

export class Metrics {
  readonly registry = new Registry();
  private readonly sources = new Set<SourceProvider>();
  private mapSize: MapSizeProvider | undefined;

  readonly decisions: Counter<'stage' | 'restriction' | 'result'>;
  readonly auth: Counter<'backend' | 'mechanism' | 'result'>;
  readonly upstream: Counter<'result'>;
  readonly upstreamSeconds: Histogram<'result'>;
  readonly feedRequests: Counter<'feed' | 'result'>;

  constructor() {
    const self = this;
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'relaygate_' });
    this.decisions = new Counter({
      name: 'relaygate_decisions_total',
      help: 'Relay decisions by stage (mail, rcpt), the restriction that decided (end_of_list when none) and result (permit, reject, defer, dunno)',
      labelNames: ['stage', 'restriction', 'result'],
      registers,
      // counted in plain numbers by countDecision() (the hot path of every front end), read at scrape time
      collect() {
        this.reset();
        for (const c of self.decisionCounts.values()) this.inc(c.labels, c.n);
      },
    });
    this.auth = new Counter({
      name: 'relaygate_sasl_auth_total',
      help: 'SMTP AUTH attempts by backend, mechanism and result (success, failure, tempfail, lockout)',
      labelNames: ['backend', 'mechanism', 'result'],
      registers,
    });
    this.upstream = new Counter({
      name: 'relaygate_upstream_messages_total',
      help: 'Messages forwarded to the relayhost by result (sent, deferred, bounced, aborted)',
      labelNames: ['result'],
      registers,
    });
    this.upstreamSeconds = new Histogram({
      name: 'relaygate_upstream_seconds',
      help: 'Time from the end of the client DATA to the relayhost final reply',
      labelNames: ['result'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.feedRequests = new Counter({
      name: 'relaygate_feed_requests_total',
      help: 'Network feed requests (drac, whoson, http) by result (accepted, refused, error)',
      labelNames: ['feed', 'result'],
      registers,
    });

    // Read at scrape time from the running components.
    const perSource = (name: string, help: string, pick: (s: SourceStats) => number | undefined, type: 'counter' | 'gauge') => {
      const collect = async function (this: Counter<'source' | 'format'> | Gauge<'source' | 'format'>) {
        this.reset();
        for (const s of await self.sourceStats()) {
          const v = pick(s);
          if (v === undefined) continue;
          if (this instanceof Counter) this.inc({ source: s.source, format: s.format }, v);
          else (this as Gauge<'source' | 'format'>).set({ source: s.source, format: s.format }, v);
        }
      };
      if (type === 'counter') new Counter({ name, help, labelNames: ['source', 'format'], registers, collect });
      else new Gauge({ name, help, labelNames: ['source', 'format'], registers, collect });
    };
    perSource('relaygate_source_lines_total', 'Log lines read, per source', (s) => s.lines, 'counter');
    perSource('relaygate_source_logins_total', 'Successful logins seen in the logs or feeds, per source', (s) => s.logins, 'counter');
    perSource('relaygate_source_grants_total', 'Grants recorded (logins the map accepted), per source', (s) => s.grants, 'counter');
    perSource('relaygate_source_lag_bytes', 'Bytes written to a watched file and not read yet', (s) => s.lagBytes, 'gauge');
    new Gauge({
      name: 'relaygate_map_grants',
      help: 'Unexpired grants in the access map',
      registers,
      async collect() {
        if (self.mapSize === undefined) return;
        try {
          this.set(await self.mapSize());
        } catch {
          // a store failure shows on /healthz; the gauge keeps its last value
        }
      },
    });
  }

  private async sourceStats(): Promise<SourceStats[]> {
    const out: SourceStats[] = [];
    for (const p of this.sources) out.push(...(await p()));
    return out;
  }

  addSources(p: SourceProvider): () => void {
    this.sources.add(p);
    return () => this.sources.delete(p);
  }

  setMapSize(p: MapSizeProvider | undefined): void {
    this.mapSize = p;
  }

  /** countDecision()'s numbers, by restriction, stage and result (few distinct values: nested maps, no key string) */
  private readonly decisionCounts = new Map<string, { readonly labels: { stage: string; restriction: string; result: string }; n: number }>();
  private readonly decisionIndex = new Map<string, Map<string, Map<string, { n: number }>>>();

  /** Counts one decision (three map lookups on constant strings; prom-client reads the numbers at scrape time). */
  countDecision(stage: string, restriction: string, result: string): void {
    let byStage = this.decisionIndex.get(restriction);
    if (byStage === undefined) this.decisionIndex.set(restriction, (byStage = new Map()));
    let byResult = byStage.get(stage);
    if (byResult === undefined) byStage.set(stage, (byResult = new Map()));
    let c = byResult.get(result);
    if (c === undefined) {
      const entry = { labels: { stage, restriction, result }, n: 0 };
      this.decisionCounts.set(`${stage}\u0000${restriction}\u0000${result}`, entry);
      byResult.set(result, (c = entry));
    }
    c.n++;
  }

  /** Prometheus text exposition format. */
  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/** The process's metrics. */
export const metrics = new Metrics();
