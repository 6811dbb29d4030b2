// relaygate's own network feed: `POST /v1/logins` over HTTP or HTTPS, each request signed by a feeder with
// HMAC-SHA256 (src/feeds/hmac.ts). A POP/IMAP host running `relaygate run` with `push_to` (src/push/) is the
// usual feeder; README "Remote POP servers: the signed HTTP feed" documents the protocol for others.
//
// Request: `Content-Type: application/json`, at most MAX_BODY bytes, either one login
//   {"ip": "192.0.2.7", "user": "alice", "service": "pop3", "ttl": 900, "at": "2026-11-21T16:33:39Z"}
// (only `ip` is required) or a batch {"logins": [ ...up to MAX_LOGINS of them... ]} (the push client's
// outbox flush). Response 200 {"results": [{"ip", "status": "granted", "expires"} | {"ip", "status":
// "refused", "reason"}]} in request order; 400 bad body, 401 not authenticated (the client is never told
// why: unknown key, bad signature, old timestamp and replay all look alike; the log says which), 404/405
// wrong path or method, 413 too large, 415 not JSON, 429 the feeder's rate limit, 503 the store failed
// (temporary: the sender keeps the logins and retries).
// Every login becomes a LoginEvent with source `feed:<key id>`; `ttl` is capped at `grace` (a feeder can
// shorten a grant, never lengthen it beyond what a local login would get); `at` in the future counts as
// now (the store clamps it) and an `at` older than the grant's lifetime is refused as stale.
//
// Security: everything in a request is untrusted until the signature checked out, and only the body's
// size and content type are looked at before that. After it, the body is still validated field by field:
// the IP goes through normalizeIp() (junk is refused per login, never for the whole batch), usernames over
// MAX_USER characters or holding control characters make a grant without a user (as the log sources do),
// and mynetworks / never_authorize are enforced by the store. The listener binds loopback unless
// configured otherwise; plain HTTP on another address needs `allow_plain_http = true` (config validation),
// because the HMAC protects integrity and freshness but not the privacy of who logged in from where.

import { metrics } from '../metrics/metrics.ts';
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { normalizeIp } from '../net/index.ts';
import { listenError } from '../net/listen-error.ts';
import { parseEndpoint, endpointText, type Endpoint } from '../frontends/smtp/endpoints.ts';
import { MAX_USER } from '../sources/parser.ts';
import { RelaygateError } from '../errors.ts';
import type { AccessMap, LoginEvent, RecordResult } from '../store/index.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log/logger.ts';
import type { Config } from '../config/index.ts';
import { FEEDER_ID_RE, NonceMemory, verifyRequest, type FeederKeys, HEADER_KEY_ID, TIMESTAMP_WINDOW_S } from './hmac.ts';

export const FEED_PATH = '/v1/logins';
/** Largest request body accepted (bytes); a batch of MAX_LOGINS logins fits comfortably. */
export const MAX_BODY = 1 << 20;
export const MAX_LOGINS = 1000;
const SERVICE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/;
const RFC3339_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|z|[+-]\d\d:\d\d)$/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f-\x9f\u2028\u2029]/;

const loginSchema = z.strictObject({
  ip: z.string().min(1).max(64),
  user: z.string().max(4096).nullable().optional(),
  service: z.string().regex(SERVICE_RE, 'expected 1-32 characters of A-Z a-z 0-9 . _ - (e.g. "pop3")').optional(),
  ttl: z.number().int('expected whole seconds').min(1).max(366 * 86400).optional(),
  at: z.string().regex(RFC3339_RE, 'expected an RFC 3339 time such as "2026-11-21T16:33:39Z"').optional(),
});
const batchSchema = z.strictObject({ logins: z.array(loginSchema).min(1).max(MAX_LOGINS) });
type LoginBody = z.output<typeof loginSchema>;

export interface LoginResult {
  readonly ip: string;
  readonly status: 'granted' | 'refused';
  readonly expires?: string;
  readonly reason?: string;
  readonly user_dropped?: string;
  readonly ttl_capped?: boolean;
}

export interface HttpFeedOptions {
  /** `ip:port` / `[ipv6]:port`; port 0 picks a free port (tests) */
  readonly listen: string;
  /** PEM file paths: both or neither (then plain HTTP) */
  readonly tlsCert?: string | undefined;
  readonly tlsKey?: string | undefined;
  /** feeder id → one or two secrets */
  readonly keys: Readonly<Record<string, string | readonly string[]>>;
  readonly map: Pick<AccessMap, 'recordMany'>;
  /** seconds: the cap for a login's ttl */
  readonly grace: number;
  /** requests per second per feeder (burst: one second's worth) */
  readonly rateLimit: number;
  readonly clock: Clock;
  readonly logger: Logger;
  /** nonces remembered per feeder at most (default 200,000) */
  readonly maxNonces?: number;
}

export interface FeedCounters {
  requests: number;
  accepted: number;
  refused: number;
  logins: number;
  granted: number;
}

export interface HttpFeed {
  /** the bound address (the kernel's port when configured with port 0) */
  readonly address: Endpoint;
  readonly tls: boolean;
  readonly counters: FeedCounters;
  /** re-reads tls_cert / tls_key (SIGHUP); keeps the old pair when the new one is unusable */
  reloadTls(): Promise<void>;
  /** stops accepting, lets requests in progress finish (bounded), closes every connection */
  stop(): Promise<void>;
}

/** Feeder secrets as buffers, from `[feed] keys` (`id = "secret"` or `id = ["new", "old"]`). */
export function feederKeys(keys: HttpFeedOptions['keys']): FeederKeys & { readonly size: number } {
  const m = new Map<string, readonly Buffer[]>();
  for (const [id, v] of Object.entries(keys)) m.set(id, (typeof v === 'string' ? [v] : v).map((s) => Buffer.from(s, 'utf8')));
  return { get: (id) => (Object.hasOwn(keys, id) ? m.get(id) : undefined), size: m.size };
}

/** A token bucket per feeder: `rate` requests per second, `rate` at once after a quiet second. */
class FeederRate {
  private readonly buckets = new Map<string, { tokens: number; last: number }>();
  constructor(
    private readonly rate: number,
    private readonly clock: Clock,
  ) {}

  take(keyId: string): boolean {
    const now = this.clock();
    let b = this.buckets.get(keyId); // keys are configured feeder ids only: bounded by the configuration
    if (b === undefined) {
      b = { tokens: this.rate, last: now };
      this.buckets.set(keyId, b);
    }
    b.tokens = Math.min(this.rate, b.tokens + (Math.max(0, now - b.last) / 1000) * this.rate);
    b.last = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    readonly body: Record<string, unknown>,
  ) {
    super(reason);
  }
}

function send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), 'cache-control': 'no-store', ...headers });
  res.end(text);
}

/** Reads the body, refusing (413) as soon as it grows past `limit`. */
function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((done, fail) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > limit) {
        req.off('data', onData);
        req.resume(); // drain the rest; the connection is closed after the 413
        fail(new HttpError(413, 'too_large', { error: 'payload_too_large', limit }));
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.once('end', () => done(Buffer.concat(chunks, size)));
    req.once('error', fail);
  });
}

function issuesText(err: z.ZodError, prefix: string): string {
  return err.issues
    .slice(0, 5)
    .map((i) => `${[prefix, ...i.path.map(String)].filter((p) => p !== '').join('.') || '(body)'}: ${i.message}`)
    .join('; ');
}

/** Parses and validates the body: one login object, or {"logins": [...]}. Throws HttpError(400). */
export function parseLogins(body: Buffer): LoginBody[] {
  let data: unknown;
  try {
    data = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new HttpError(400, 'bad_json', { error: 'bad_request', detail: `body is not JSON: ${(err as Error).message}` });
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new HttpError(400, 'bad_body', { error: 'bad_request', detail: 'expected a JSON object: one login {"ip": ...} or a batch {"logins": [...]}' });
  }
  if (Object.hasOwn(data, 'logins')) {
    const r = batchSchema.safeParse(data);
    if (!r.success) throw new HttpError(400, 'bad_body', { error: 'bad_request', detail: issuesText(r.error, '') });
    return r.data.logins;
  }
  const r = loginSchema.safeParse(data);
  if (!r.success) throw new HttpError(400, 'bad_body', { error: 'bad_request', detail: issuesText(r.error, '') });
  return [r.data];
}

export async function startHttpFeed(opts: HttpFeedOptions): Promise<HttpFeed> {
  const ep = parseEndpoint(opts.listen, { allowPortZero: true });
  if (typeof ep === 'string') throw new RelaygateError('RG_ERR_CONFIG_INVALID', `feed.listen: ${ep}`);
  const keys = feederKeys(opts.keys);
  if (keys.size === 0) throw new RelaygateError('RG_ERR_CONFIG_INVALID', 'feed.keys: no feeder key configured; add one per feeder: keys = { pop1 = "<secret of at least 32 bytes>" }');
  // A feeder can use at most rate × (two windows + 1 s) nonces before its oldest expire; room for that,
  // within a hard cap (~100 bytes a nonce). Beyond it requests are refused (401), never replays let in.
  const nonces = new NonceMemory(opts.maxNonces ?? Math.min(2_000_000, Math.max(200_000, opts.rateLimit * (2 * TIMESTAMP_WINDOW_S + 2))));
  const rate = new FeederRate(opts.rateLimit, opts.clock);
  const { logger, clock } = opts;
  const counters: FeedCounters = { requests: 0, accepted: 0, refused: 0, logins: 0, granted: 0 };
  const useTls = opts.tlsCert !== undefined && opts.tlsKey !== undefined;
  const inFlight = new Set<Promise<void>>();

  const refuse = (res: http.ServerResponse, remote: string, e: HttpError, extra: Record<string, unknown> = {}, close = false): void => {
    counters.refused++;
    metrics.feedRequests.inc({ feed: 'http', result: 'refused' });
    const feeder = typeof extra.feeder === 'string' ? extra.feeder : undefined;
    logger.warn(
      { event: 'feed_refused', status: e.status, reason: e.reason, remote_ip: remote, ...extra },
      `feed: refused a request from ${remote}${feeder ? ` (key id ${feeder})` : ''}: ${e.status} ${e.reason}`,
    );
    const headers: Record<string, string> = close ? { connection: 'close' } : {};
    if (e.status === 405) headers.allow = 'POST';
    if (e.status === 429) headers['retry-after'] = '1';
    if (e.status === 503) headers['retry-after'] = '5';
    send(res, e.status, e.body, headers);
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    counters.requests++;
    const started = performance.now();
    const remote = normalizeIp(req.socket.remoteAddress ?? '') ?? String(req.socket.remoteAddress);
    const path = req.url ?? '';
    if (path !== FEED_PATH) return refuse(res, remote, new HttpError(404, 'not_found', { error: 'not_found', detail: `the feed answers only ${FEED_PATH}` }), { path: path.slice(0, 200) }, true);
    if (req.method !== 'POST') return refuse(res, remote, new HttpError(405, 'method', { error: 'method_not_allowed', detail: 'use POST' }), { method: req.method }, true);
    const ctype = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (ctype !== 'application/json') {
      return refuse(res, remote, new HttpError(415, 'content_type', { error: 'unsupported_media_type', detail: 'Content-Type must be application/json' }), {}, true);
    }
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > MAX_BODY) {
      return refuse(res, remote, new HttpError(413, 'too_large', { error: 'payload_too_large', limit: MAX_BODY }), { bytes: declared }, true);
    }
    let body: Buffer;
    try {
      body = await readBody(req, MAX_BODY);
    } catch (err) {
      if (err instanceof HttpError) return refuse(res, remote, err, {}, true);
      logger.warn({ event: 'feed_read_failed', remote_ip: remote, err: (err as Error).message }, `feed: reading a request from ${remote} failed: ${(err as Error).message}`);
      res.destroy();
      return;
    }
    const auth = verifyRequest(keys, nonces, { method: req.method, path, headers: req.headers, body, now: clock() });
    if (!auth.ok) {
      const claimed = req.headers[HEADER_KEY_ID];
      const feeder = typeof claimed === 'string' && FEEDER_ID_RE.test(claimed) ? claimed : undefined;
      counters.refused++;
      metrics.feedRequests.inc({ feed: 'http', result: 'refused' });
      logger.warn(
        { event: 'feed_refused', status: 401, reason: auth.why, remote_ip: remote, feeder },
        `feed: refused a request from ${remote}${feeder ? ` (key id ${feeder})` : ''}: 401 ${auth.why}`,
      );
      send(res, 401, { error: 'unauthorized' });
      return;
    }
    const feeder = auth.keyId;
    if (!rate.take(feeder)) return refuse(res, remote, new HttpError(429, 'rate_limited', { error: 'rate_limited', detail: `more than ${opts.rateLimit} requests per second` }), { feeder });
    let logins: LoginBody[];
    try {
      logins = parseLogins(body);
    } catch (err) {
      if (err instanceof HttpError) return refuse(res, remote, err, { feeder, detail: String(err.body.detail ?? '').slice(0, 300) });
      throw err;
    }
    const source = `feed:${feeder}`;
    const now = clock();
    const results: (LoginResult | undefined)[] = new Array(logins.length);
    const events: LoginEvent[] = [];
    const eventIndex: number[] = [];
    const notes: { user_dropped?: string; ttl_capped?: boolean }[] = [];
    for (const [i, l] of logins.entries()) {
      const ip = normalizeIp(l.ip);
      if (ip === undefined) {
        results[i] = { ip: l.ip, status: 'refused', reason: 'bad_ip' };
        continue;
      }
      let user: string | undefined = l.user ?? undefined;
      const note: { user_dropped?: string; ttl_capped?: boolean } = {};
      if (user !== undefined && user.length > MAX_USER) note.user_dropped = `username longer than ${MAX_USER} characters`;
      else if (user !== undefined && CONTROL.test(user)) note.user_dropped = 'username holds control characters';
      if (note.user_dropped !== undefined) {
        logger.warn({ event: 'login_user_dropped', client_ip: ip, source, why: note.user_dropped }, `grant for ${ip} made without a user: ${note.user_dropped}`);
        user = undefined;
      }
      if (user === '') user = undefined;
      let ttl = l.ttl;
      if (ttl !== undefined && ttl > opts.grace) {
        ttl = opts.grace;
        note.ttl_capped = true;
      }
      const at = l.at === undefined ? now : Date.parse(l.at);
      if (!Number.isFinite(at)) {
        results[i] = { ip, status: 'refused', reason: 'bad_time' };
        continue;
      }
      events.push({ ip, user, service: l.service, source, at, ttl });
      eventIndex.push(i);
      notes.push(note);
    }
    let recorded: RecordResult[];
    try {
      // One recordMany per request; lmdb-js commits concurrent requests' transactions together (measured:
      // a batcher of our own that kept one write in flight was 2-3x slower, bench/feed.ts).
      recorded = await opts.map.recordMany(events);
    } catch (err) {
      logger.error(
        { event: 'feed_store_failed', feeder, remote_ip: remote, logins: events.length, err_code: err instanceof RelaygateError ? err.code : 'RG_ERR_INTERNAL', err: (err as Error).message },
        `feed: could not record ${events.length} login(s) from ${feeder}: ${(err as Error).message}; answered 503 (the feeder retries)`,
      );
      return refuse(res, remote, new HttpError(503, 'store_failed', { error: 'temporarily_unavailable' }), { feeder });
    }
    let granted = 0;
    for (const [k, r] of recorded.entries()) {
      const i = eventIndex[k]!;
      const ip = events[k]!.ip;
      if (r.recorded) {
        granted++;
        results[i] = { ip, status: 'granted', expires: new Date(r.grant.expires).toISOString(), ...notes[k] };
      } else results[i] = { ip, status: 'refused', reason: r.reason, ...notes[k] };
    }
    counters.accepted++;
    metrics.feedRequests.inc({ feed: 'http', result: 'accepted' });
    counters.logins += logins.length;
    counters.granted += granted;
    const ms = Math.round((performance.now() - started) * 100) / 100;
    logger.info(
      { event: 'feed_accepted', feeder, key_slot: auth.slot, remote_ip: remote, logins: logins.length, granted, refused: logins.length - granted, ms },
      `feed: ${feeder} from ${remote}: ${logins.length} login(s), ${granted} granted, ${logins.length - granted} refused`,
    );
    send(res, 200, { results });
  };

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const p = handle(req, res)
      .catch((err: unknown) => {
        // An unexpected error ends this request with a temporary failure, never the daemon.
        logger.error({ event: 'feed_internal_error', err }, `feed: internal error: ${(err as Error).message}`);
        if (!res.headersSent) send(res, 503, { error: 'temporarily_unavailable' }, { connection: 'close', 'retry-after': '5' });
        else res.destroy();
      })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  };

  let tlsPair: { key: Buffer; cert: Buffer } | undefined;
  if (useTls) tlsPair = await readTlsPair(opts.tlsCert!, opts.tlsKey!);
  const serverOptions: http.ServerOptions = { requestTimeout: 30_000, headersTimeout: 10_000, keepAliveTimeout: 60_000, maxHeaderSize: 16 * 1024 };
  const server: http.Server = tlsPair
    ? https.createServer({ ...serverOptions, key: tlsPair.key, cert: tlsPair.cert, minVersion: 'TLSv1.2' }, onRequest)
    : http.createServer(serverOptions, onRequest);
  server.maxConnections = 512;
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    logger.debug({ event: 'feed_client_error', err: err.message, code: err.code }, `feed: client error: ${err.message}`);
    if (socket.writable && !socket.destroyed) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
  });
  await new Promise<void>((done, fail) => {
    const onError = (err: NodeJS.ErrnoException): void => fail(listenError('feed', endpointText(ep), err));
    server.once('error', onError);
    server.listen({ host: ep.host, port: ep.port, exclusive: true }, () => {
      server.off('error', onError);
      done();
    });
  });
  server.on('error', (err) => logger.error({ event: 'feed_server_error', err }, `feed: server error: ${err.message}`));
  const bound = server.address() as AddressInfo;
  const address: Endpoint = { host: normalizeIp(bound.address) ?? bound.address, port: bound.port };
  logger.info(
    { event: 'feed_listen', address: endpointText(address), tls: useTls, feeders: [...Object.keys(opts.keys)].sort() },
    `feed: listening on ${useTls ? 'https' : 'http'}://${endpointText(address)}${FEED_PATH} for ${keys.size} feeder(s)`,
  );

  let stopping: Promise<void> | undefined;
  return {
    address,
    tls: useTls,
    counters,
    async reloadTls() {
      if (!useTls) return;
      try {
        const pair = await readTlsPair(opts.tlsCert!, opts.tlsKey!);
        (server as https.Server).setSecureContext({ key: pair.key, cert: pair.cert, minVersion: 'TLSv1.2' });
        logger.info({ event: 'feed_tls_reloaded', cert_file: resolve(opts.tlsCert!) }, 'feed: TLS certificate reloaded');
      } catch (err) {
        logger.error({ event: 'feed_tls_reload_failed', err: (err as Error).message }, `feed: keeping the old TLS certificate: ${(err as Error).message}`);
      }
    },
    stop() {
      stopping ??= (async () => {
        const closed = new Promise<void>((done) => server.close(() => done()));
        server.closeIdleConnections();
        const bounded = new Promise<void>((done) => setTimeout(done, 5_000).unref());
        await Promise.race([Promise.allSettled([...inFlight]), bounded]);
        server.closeAllConnections();
        await closed;
        logger.info({ event: 'feed_stopped', requests: counters.requests, accepted: counters.accepted, refused: counters.refused }, 'feed: stopped');
      })();
      return stopping;
    },
  };
}

async function readTlsPair(certFile: string, keyFile: string): Promise<{ key: Buffer; cert: Buffer }> {
  let key: Buffer;
  let cert: Buffer;
  try {
    [cert, key] = await Promise.all([readFile(resolve(certFile)), readFile(resolve(keyFile))]);
  } catch (err) {
    throw new RelaygateError('RG_ERR_CONFIG_INVALID', `feed TLS: cannot read ${resolve(certFile)} / ${resolve(keyFile)}: ${(err as Error).message}`, {
      cause: err,
      details: ['check feed.tls_cert and feed.tls_key: PEM files readable by the relaygate user'],
    });
  }
  try {
    createSecureContext({ key, cert });
  } catch (err) {
    throw new RelaygateError('RG_ERR_CONFIG_INVALID', `feed TLS: ${resolve(certFile)} / ${resolve(keyFile)} are not a usable certificate and key: ${(err as Error).message}`, {
      cause: err,
      details: ['feed.tls_cert must be the PEM certificate (chain) and feed.tls_key its unencrypted PEM private key'],
    });
  }
  return { key, cert };
}

/** `relaygate run`: the feed when `[feed] listen` is set, else undefined. */
export async function startConfiguredFeed(o: { config: Config; map: Pick<AccessMap, 'recordMany'>; clock: Clock; logger: Logger }): Promise<HttpFeed | undefined> {
  const f = o.config.feed;
  if (f.listen === undefined) return undefined;
  return startHttpFeed({
    listen: f.listen,
    tlsCert: f.tls_cert,
    tlsKey: f.tls_key,
    keys: f.keys,
    map: o.map,
    grace: o.config.grace,
    rateLimit: f.rate_limit,
    clock: o.clock,
    logger: o.logger,
  });
}

function isLoopback(host: string): boolean {
  return host === '::1' || /^127\./.test(host);
}

/** Every problem of `[feed]`, as `key: problem` lines; validate.ts runs it for `config check` and `run`. */
export function httpFeedConfigProblems(config: Config): string[] {
  const f = config.feed;
  const out: string[] = [];
  const nKeys = Object.keys(f.keys).length;
  if (f.listen === undefined) {
    if (nKeys > 0 || f.tls_cert !== undefined || f.tls_key !== undefined) out.push('feed.listen: [feed] keys/tls_cert/tls_key are set but listen is not: set listen = "127.0.0.1:8473" (or remove them)');
    return out;
  }
  const ep = parseEndpoint(f.listen, { allowPortZero: true });
  if (typeof ep === 'string') out.push(`feed.listen: ${ep}`);
  if (nKeys === 0) out.push('feed.keys: no feeder can authenticate: add keys = { <feeder id> = "<secret>" } (generate a secret with: openssl rand -hex 32)');
  if ((f.tls_cert === undefined) !== (f.tls_key === undefined)) out.push('feed.tls_cert: tls_cert and tls_key go together: set both for HTTPS, or neither for plain HTTP');
  const tls = f.tls_cert !== undefined && f.tls_key !== undefined;
  if (tls) {
    try {
      createSecureContext({ cert: readFileSync(resolve(f.tls_cert!)), key: readFileSync(resolve(f.tls_key!)) });
    } catch (err) {
      out.push(`feed.tls_cert: ${resolve(f.tls_cert!)} / ${resolve(f.tls_key!)} are not a readable, matching PEM certificate and key: ${(err as Error).message}`);
    }
  }
  if (typeof ep !== 'string' && !tls && !isLoopback(ep.host) && !f.allow_plain_http) {
    out.push(
      `feed.listen: ${endpointText(ep)} is not a loopback address and the feed has no TLS: set tls_cert and tls_key (logins would cross the network in clear text), or allow_plain_http = true if a trusted network or tunnel protects it`,
    );
  }
  return out;
}
