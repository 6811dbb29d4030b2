// The push client: delivers the outbox (outbox.ts) to one `push_to` URL, in order, in signed batches
// (`POST /v1/logins` {"logins": [...]}, signed as src/feeds/hmac.ts defines), over one kept-alive
// connection (node:http(s) Agent with keepAlive), one request in flight per URL.
//
// Delivery: a batch is acknowledged in the outbox (and so deleted once every URL has it) only after the
// server answered 200; per-login refusals in that answer (mynetworks, stale, ...) are final and logged.
// Anything else — connection refused, timeout, TLS failure, 5xx, 429, 401 (e.g. a key being rotated) — is
// retried with exponential back-off and jitter (RETRY_MIN_MS doubling to RETRY_MAX_MS; 429/503 honour
// Retry-After), for as long as the logins are worth delivering: a login older than `grace` is dropped
// rather than delivered (counted, logged as push_dropped_stale). 413 halves the batch and retries at once.
// Delivery is at least once: a crash between the 200 and the ack re-sends a batch, which the receiver
// merges into the same grants.
//
// Security: the secret never leaves this process except as an HMAC; each attempt is signed anew (fresh
// timestamp and nonce), so a retry is never mistaken for a replay. HTTPS verifies the server's
// certificate against the system CAs or `push_ca`; there is no option to skip verification.

import http from 'node:http';
import https from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log/logger.ts';
import { signRequest } from '../feeds/hmac.ts';
import type { Outbox, OutboxEntry } from './outbox.ts';

export const BATCH_MAX = 500;
export const RETRY_MIN_MS = 250;
export const RETRY_MAX_MS = 30_000;
export const REQUEST_TIMEOUT_MS = 10_000;
const MAX_RESPONSE = 1 << 20;

export interface PushSenderOptions {
  readonly url: string;
  readonly keyId: string;
  readonly secret: string;
  /** PEM CA bundle for https (push_ca); undefined: the system CAs */
  readonly ca?: Buffer | undefined;
  readonly outbox: Outbox;
  /** seconds: logins older than this are dropped, not delivered */
  readonly grace: number;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
  readonly timeoutMs?: number;
}

export interface SenderCounters {
  requests: number;
  delivered: number;
  granted: number;
  refused: number;
  droppedStale: number;
  failures: number;
}

interface Attempt {
  readonly status: number;
  readonly body: string;
  readonly retryAfter?: number | undefined;
}

/** The delay before retry number `n` (1-based): doubling from min to max, "equal jitter" (half fixed, half random). */
export function backoffMs(n: number, min = RETRY_MIN_MS, max = RETRY_MAX_MS, random: () => number = Math.random): number {
  const full = Math.min(max, min * 2 ** Math.min(30, Math.max(0, n - 1)));
  return Math.round(full / 2 + random() * (full / 2));
}

function wireLogin(e: OutboxEntry): Record<string, unknown> {
  const o: Record<string, unknown> = { ip: e.ip };
  if (e.user !== undefined) o.user = e.user;
  if (e.service !== undefined) o.service = e.service;
  o.at = new Date(e.at).toISOString();
  return o;
}

export class PushSender {
  readonly counters: SenderCounters = { requests: 0, delivered: 0, granted: 0, refused: 0, droppedStale: 0, failures: 0 };
  private readonly target: URL;
  private readonly agent: http.Agent;
  private stopped = false;
  private wakeUp: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private current: http.ClientRequest | undefined;
  private batch = BATCH_MAX;
  private failingSince: number | undefined;
  private unsubscribe: (() => void) | undefined;
  private readonly stopSignal = new AbortController();

  /** the URL this sender delivers to */
  get url(): string {
    return this.opts.url;
  }

  constructor(private readonly opts: PushSenderOptions) {
    this.target = new URL(opts.url);
    const common = { keepAlive: true, maxSockets: 1, timeout: 30_000 };
    this.agent = this.target.protocol === 'https:' ? new https.Agent({ ...common, ...(opts.ca === undefined ? {} : { ca: opts.ca }), minVersion: 'TLSv1.2' }) : new http.Agent(common);
  }

  start(): void {
    this.unsubscribe = this.opts.outbox.onAppend(() => this.wake());
    this.loop = this.run();
  }

  /** New logins were queued: send now if idle. */
  wake(): void {
    const w = this.wakeUp;
    this.wakeUp = undefined;
    w?.();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    this.stopSignal.abort();
    this.current?.destroy(new Error('stopping'));
    this.wake();
    await this.loop;
    this.agent.destroy();
  }

  /** Resolves on wake(), stop() or after `ms`. */
  private idle(ms: number): Promise<void> {
    return new Promise((done) => {
      const t = setTimeout(() => {
        this.wakeUp = undefined;
        done();
      }, ms);
      this.wakeUp = () => {
        clearTimeout(t);
        done();
      };
    });
  }

  private async run(): Promise<void> {
    const { outbox, logger, url } = this.opts;
    let attempt = 0;
    let resentOnFreshSocket = false;
    while (!this.stopped) {
      let entries: OutboxEntry[];
      try {
        entries = outbox.read(outbox.cursor(url), this.batch);
      } catch (err) {
        logger.error({ event: 'push_outbox_failed', url, err: (err as Error).message }, `push: cannot read the outbox: ${(err as Error).message}`);
        await this.idle(5_000);
        continue;
      }
      if (entries.length === 0) {
        await this.idle(5_000);
        continue;
      }
      const last = entries[entries.length - 1]!.seq;
      const now = this.opts.clock();
      const fresh = entries.filter((e) => e.at + this.opts.grace * 1000 > now);
      const stale = entries.length - fresh.length;
      if (stale > 0) {
        this.counters.droppedStale += stale;
        logger.warn(
          { event: 'push_dropped_stale', url, count: stale, grace_s: this.opts.grace },
          `push: dropped ${stale} login(s) older than grace (${this.opts.grace}s) instead of delivering them to ${url}`,
        );
      }
      if (fresh.length === 0) {
        await this.ackSafely(last);
        continue;
      }
      const sentAt = performance.now();
      let res: Attempt | Error;
      try {
        res = await this.post(JSON.stringify({ logins: fresh.map(wireLogin) }));
      } catch (err) {
        res = err as Error;
      }
      if (this.stopped) break;
      // A kept-alive connection the server had just closed: resend once at once (not a failure).
      if (res instanceof Error && (res as NodeJS.ErrnoException & { reusedSocket?: boolean }).reusedSocket === true && !resentOnFreshSocket) {
        resentOnFreshSocket = true;
        continue;
      }
      resentOnFreshSocket = false;
      if (!(res instanceof Error) && res.status === 200) {
        const { granted, refused, reasons } = summarize(res.body, fresh.length);
        this.counters.delivered += fresh.length;
        this.counters.granted += granted;
        this.counters.refused += refused;
        await this.ackSafely(last);
        if (this.failingSince !== undefined) {
          logger.info({ event: 'push_recovered', url, attempts: attempt, down_ms: this.opts.clock() - this.failingSince }, `push: ${url} reachable again after ${attempt} failed attempt(s)`);
          this.failingSince = undefined;
        }
        attempt = 0;
        const ms = Math.round((performance.now() - sentAt) * 100) / 100;
        logger.debug({ event: 'push_delivered', url, logins: fresh.length, granted, refused, ms }, `push: delivered ${fresh.length} login(s) to ${url}`);
        if (refused > 0) logger.warn({ event: 'push_logins_refused', url, refused, reasons }, `push: ${url} refused ${refused} of ${fresh.length} login(s): ${Object.entries(reasons).map(([r, n]) => `${r}=${n}`).join(', ')}`);
        continue;
      }
      if (!(res instanceof Error) && res.status === 413 && this.batch > 1) {
        this.batch = Math.max(1, Math.floor(Math.min(this.batch, fresh.length) / 2));
        logger.warn({ event: 'push_batch_reduced', url, batch: this.batch }, `push: ${url} answered 413; sending at most ${this.batch} login(s) per request`);
        continue;
      }
      attempt++;
      this.counters.failures++;
      this.failingSince ??= this.opts.clock();
      let wait = backoffMs(attempt, this.opts.retryMinMs, this.opts.retryMaxMs);
      if (!(res instanceof Error) && res.retryAfter !== undefined) wait = Math.max(wait, Math.min(res.retryAfter * 1000, this.opts.retryMaxMs ?? RETRY_MAX_MS));
      const why = res instanceof Error ? res.message : `HTTP ${res.status}${res.body ? ` ${res.body.slice(0, 200)}` : ''}`;
      logger.warn(
        { event: 'push_failed', url, attempt, status: res instanceof Error ? undefined : res.status, err: res instanceof Error ? res.message : undefined, queued: outbox.size, retry_in_ms: wait },
        `push: delivery to ${url} failed (${why}); ${outbox.size} login(s) queued, retry ${attempt} in ${wait} ms`,
      );
      try {
        await sleep(wait, undefined, { signal: this.stopSignal.signal });
      } catch {
        break; // stopping
      }
    }
  }

  private async ackSafely(seq: number): Promise<void> {
    try {
      await this.opts.outbox.ack(this.opts.url, seq);
    } catch (err) {
      if (!this.stopped) this.opts.logger.error({ event: 'push_outbox_failed', url: this.opts.url, err: (err as Error).message }, `push: cannot record delivery in the outbox: ${(err as Error).message}`);
    }
  }

  private post(body: string): Promise<Attempt> {
    const t = this.target;
    const path = `${t.pathname}${t.search}`;
    const headers = {
      ...signRequest({ keyId: this.opts.keyId, secret: this.opts.secret, path, body, now: this.opts.clock() }),
      'content-length': String(Buffer.byteLength(body)),
      'user-agent': 'relaygate-push/1',
    };
    const mod = t.protocol === 'https:' ? https : http;
    this.counters.requests++;
    return new Promise<Attempt>((done, fail) => {
      const req = mod.request(
        {
          protocol: t.protocol,
          hostname: t.hostname.startsWith('[') ? t.hostname.slice(1, -1) : t.hostname,
          port: t.port === '' ? undefined : Number(t.port),
          method: 'POST',
          path,
          headers,
          agent: this.agent,
          timeout: this.opts.timeoutMs ?? REQUEST_TIMEOUT_MS,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size <= MAX_RESPONSE) chunks.push(c);
          });
          res.once('end', () => {
            const ra = Number(res.headers['retry-after']);
            done({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), retryAfter: Number.isFinite(ra) && ra >= 0 ? ra : undefined });
          });
          res.once('error', fail);
        },
      );
      this.current = req;
      req.once('timeout', () => req.destroy(new Error(`no answer within ${this.opts.timeoutMs ?? REQUEST_TIMEOUT_MS} ms`)));
      req.once('error', (err: NodeJS.ErrnoException & { reusedSocket?: boolean }) => {
        if (req.reusedSocket && err.code === 'ECONNRESET') err.reusedSocket = true;
        fail(err);
      });
      req.once('close', () => {
        if (this.current === req) this.current = undefined;
      });
      req.end(body);
    });
  }
}

/** Counts granted/refused in a 200 answer; an unreadable answer counts every login as delivered. */
function summarize(body: string, n: number): { granted: number; refused: number; reasons: Record<string, number> } {
  const reasons: Record<string, number> = {};
  let granted = 0;
  let refused = 0;
  try {
    const parsed = JSON.parse(body) as { results?: unknown };
    if (!Array.isArray(parsed.results)) return { granted: n, refused: 0, reasons };
    for (const r of parsed.results as Array<{ status?: unknown; reason?: unknown }>) {
      if (r?.status === 'granted') granted++;
      else {
        refused++;
        const why = typeof r?.reason === 'string' ? r.reason.slice(0, 40) : 'unknown';
        reasons[why] = (reasons[why] ?? 0) + 1;
      }
    }
  } catch {
    return { granted: n, refused: 0, reasons };
  }
  return { granted, refused, reasons };
}
