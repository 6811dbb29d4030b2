// The operations HTTP listener (`[http] listen`, loopback by default): GET /metrics (Prometheus text),
// GET /healthz (store, sources, upstream; 200 or 503 with JSON), GET / (the read-only status page).
// Security: answers only clients inside `[http] allow` (default loopback) — others get 403 and a log line;
// only GET/HEAD; no request body is read; every response has nosniff and, for HTML, a CSP without scripts.
// The status page shows user names and client IPs: keep it on loopback or behind an authenticating proxy.

import http from 'node:http';
import net from 'node:net';
import type { CidrSet } from '../net/index.ts';
import { normalizeIp } from '../net/index.ts';
import { listenError } from '../net/listen-error.ts';
import type { AccessMap } from '../store/types.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log/logger.ts';
import type { SunsetPolicy } from '../engine/sunset.ts';
import type { UsageLog } from '../usage/usage-log.ts';
import { popDependents } from '../usage/report.ts';
import { metrics as defaultMetrics, type Metrics } from '../metrics/metrics.ts';
import { statusPage } from './status-page.ts';

export interface SourceHealth {
  readonly name: string;
  readonly ok: boolean;
  readonly detail?: string;
}

export interface StatusServerOptions {
  readonly host: string;
  readonly port: number;
  readonly allow: CidrSet;
  readonly map: AccessMap;
  readonly usage: UsageLog | undefined;
  readonly sunset: SunsetPolicy | undefined;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly hostname: string;
  readonly version: string;
  /** each configured source and whether it runs */
  readonly sources: () => readonly SourceHealth[];
  /** the relayhost to probe for a 220 greeting (SMTP gateway configured), or undefined */
  readonly upstream?: { readonly host: string; readonly port: number } | undefined;
  readonly metrics?: Metrics;
}

export interface StatusServer {
  readonly port: number;
  readonly host: string;
  close(): Promise<void>;
}

interface Check {
  ok: boolean;
  detail?: string;
  [k: string]: unknown;
}

const PROBE_TIMEOUT_MS = 2_000;
const PROBE_CACHE_MS = 10_000;
const GRANTS_SHOWN = 200;

/** Connects, waits for `220`, says QUIT: is the relayhost there and speaking SMTP. */
export function probeSmtp(host: string, port: number, timeoutMs = PROBE_TIMEOUT_MS): Promise<Check> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    let buf = '';
    const done = (c: Check) => {
      clearTimeout(timer);
      s.destroy();
      resolve(c);
    };
    const timer = setTimeout(() => done({ ok: false, detail: `no greeting within ${timeoutMs} ms` }), timeoutMs);
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      const nl = buf.indexOf('\n');
      if (nl === -1 && buf.length < 512) return;
      const line = buf.slice(0, nl === -1 ? 512 : nl).replace(/\r$/, '');
      if (/^220[ -]/.test(line)) {
        s.end('QUIT\r\n');
        done({ ok: true });
      } else done({ ok: false, detail: `unexpected greeting ${JSON.stringify(line.slice(0, 80))}` });
    });
    s.on('error', (err: NodeJS.ErrnoException) => done({ ok: false, detail: err.code ?? err.message }));
    s.on('close', () => done({ ok: false, detail: 'connection closed before a greeting' }));
  });
}

export async function startStatusServer(o: StatusServerOptions): Promise<StatusServer> {
  const m = o.metrics ?? defaultMetrics;
  let probe: { at: number; result: Promise<Check> } | undefined;

  async function health(): Promise<{ ok: boolean; checks: Record<string, Check> }> {
    const checks: Record<string, Check> = {};
    try {
      const st = await Promise.race([o.map.stats(o.clock()), new Promise<never>((_, rej) => setTimeout(() => rej(new Error('no answer within 2 s')), PROBE_TIMEOUT_MS).unref())]);
      checks.store = { ok: true, grants: st.active };
    } catch (err) {
      checks.store = { ok: false, detail: (err as Error).message };
    }
    const src = o.sources();
    const bad = src.filter((s) => !s.ok);
    checks.sources = { ok: bad.length === 0, count: src.length, ...(bad.length > 0 ? { detail: bad.map((s) => `${s.name}: ${s.detail ?? 'not running'}`).join('; ') } : {}) };
    if (o.upstream !== undefined) {
      const now = o.clock();
      if (probe === undefined || now - probe.at > PROBE_CACHE_MS) probe = { at: now, result: probeSmtp(o.upstream.host, o.upstream.port) };
      checks.upstream = { ...(await probe.result), relayhost: `${o.upstream.host.includes(':') ? `[${o.upstream.host}]` : o.upstream.host}:${o.upstream.port}` };
    }
    return { ok: Object.values(checks).every((c) => c.ok), checks };
  }

  async function page(): Promise<string> {
    const now = o.clock();
    await o.usage?.flush();
    const grants = await o.map.list(now);
    grants.sort((a, b) => b.expires - a.expires);
    const days = o.usage?.days(30) ?? [];
    const dependents = o.usage ? popDependents(o.usage.users(), { now, days: 30, sunset: o.sunset }) : [];
    return statusPage({ now, hostname: o.hostname, version: o.version, grants: grants.slice(0, GRANTS_SHOWN), grantsTotal: grants.length, days: days.length > 0 ? days : emptyDays(now), dependents, usageLog: o.usage !== undefined });
  }

  const server = http.createServer((req, res) => {
    const ip = normalizeIp(req.socket.remoteAddress ?? '');
    const send = (code: number, type: string, body: string, extra: Record<string, string> = {}) => {
      res.writeHead(code, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'X-Content-Type-Options': 'nosniff', 'Cache-Control': 'no-store', ...extra });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (ip === undefined || o.allow.match(ip) === undefined) {
      o.logger.warn({ event: 'http_refused', client_ip: ip ?? null, path: req.url?.slice(0, 200) }, `http: refused ${ip ?? 'unknown'}: not in [http] allow`);
      send(403, 'text/plain; charset=utf-8', 'forbidden\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(405, 'text/plain; charset=utf-8', 'only GET and HEAD\n', { Allow: 'GET, HEAD' });
      return;
    }
    const path = (req.url ?? '/').split('?', 1)[0];
    const fail = (err: unknown) => {
      o.logger.error({ event: 'http_error', path, err }, `http: ${path}: ${(err as Error).message}`);
      if (!res.headersSent) send(500, 'text/plain; charset=utf-8', 'internal error\n');
      else res.destroy();
    };
    if (path === '/metrics') {
      m.text().then((t) => send(200, t.contentType, t.body), fail);
    } else if (path === '/healthz') {
      health().then((h) => send(h.ok ? 200 : 503, 'application/json', `${JSON.stringify({ status: h.ok ? 'ok' : 'fail', checks: h.checks })}\n`), fail);
    } else if (path === '/' || path === '/status') {
      page().then(
        (html) => send(200, 'text/html; charset=utf-8', html, { 'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'" }),
        fail,
      );
    } else {
      send(404, 'text/plain; charset=utf-8', 'not found: try /, /metrics or /healthz\n');
    }
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = 50;
  await new Promise<void>((resolve, reject) => {
    const onErr = (err: NodeJS.ErrnoException) => reject(listenError('http', `${o.host.includes(':') ? `[${o.host}]` : o.host}:${o.port}`, err));
    server.once('error', onErr);
    server.listen(o.port, o.host, () => {
      server.off('error', onErr);
      resolve();
    });
  });
  const addr = server.address() as net.AddressInfo;
  o.logger.info({ event: 'http_listening', host: addr.address, port: addr.port }, `http: /metrics, /healthz and the status page on ${addr.address}:${addr.port}`);
  return {
    port: addr.port,
    host: addr.address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function emptyDays(now: number): { day: string; counts: { sasl: number; pop: number; mynetworks: number } }[] {
  return Array.from({ length: 30 }, (_, i) => ({ day: new Date(now - (29 - i) * 86_400_000).toISOString().slice(0, 10), counts: { sasl: 0, pop: 0, mynetworks: 0 } }));
}
