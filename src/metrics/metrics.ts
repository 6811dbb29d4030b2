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
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'relaygate_' });
    this.decisions = new Counter({
      name: 'relaygate_decisions_total',
      help: 'Relay decisions by stage (mail, rcpt), the restriction that decided (end_of_list when none) and result (permit, reject, defer, dunno)',
      labelNames: ['stage', 'restriction', 'result'],
      registers,
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
    const self = this;
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

  private readonly decisionChildren = new Map<string, { inc(): void }>();

  /** Counts one decision; the labelled child is cached, so this is one map lookup on the hot path. */
  countDecision(stage: string, restriction: string, result: string): void {
    const k = `${stage}\u0000${restriction}\u0000${result}`;
    let c = this.decisionChildren.get(k);
    if (c === undefined) {
      c = this.decisions.labels({ stage, restriction, result });
      this.decisionChildren.set(k, c);
    }
    c.inc();
  }

  /** Prometheus text exposition format. */
  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/** The process's metrics. */
export const metrics = new Metrics();
