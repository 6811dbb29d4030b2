// Request signing for relaygate's HTTP feed (`POST /v1/logins`): the canonical string, HMAC-SHA256, and the
// replay guard (a per-feeder nonce memory bounded in time and size). Used by the feed server
// (src/feeds/http-feed.ts) to verify and by the push client (src/push/sender.ts) to sign, so both sides
// share one definition. README "Remote POP servers: the signed HTTP feed" documents it for third parties.
//
// The signature (scheme v1) is the lowercase hex HMAC-SHA256, keyed with the feeder's secret (its UTF-8
// bytes, as configured), of these lines joined by "\n", the body last and taken byte for byte:
//
//   relaygate-v1
//   <METHOD>            POST
//   <path>              the request target as sent, e.g. /v1/logins
//   <key id>            X-Relaygate-Key-Id
//   <timestamp>         X-Relaygate-Timestamp: Unix time in seconds, decimal
//   <nonce>             X-Relaygate-Nonce: 16-128 characters of [A-Za-z0-9_-], new for every request
//   <body>              the raw request body (no trailing newline added)
//
// sent as `X-Relaygate-Signature: v1=<64 hex digits>`. Method and path are signed so a captured request
// cannot be replayed against another endpoint; the key id is signed so a request cannot be re-labelled as
// another feeder's (which would also dodge that feeder's nonce memory) should two feeders share a secret.
//
// Security: comparisons are constant-time (crypto.timingSafeEqual over equal-length digests); an unknown
// key id is still put through an HMAC so its timing looks like a wrong signature. The nonce memory is
// consulted only after the signature checked out, so unauthenticated requests cannot fill it; when it is
// full the request is refused (never is an old nonce forgotten early, which would re-open a replay).

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_SCHEME = 'relaygate-v1';
export const HEADER_KEY_ID = 'x-relaygate-key-id';
export const HEADER_TIMESTAMP = 'x-relaygate-timestamp';
export const HEADER_NONCE = 'x-relaygate-nonce';
export const HEADER_SIGNATURE = 'x-relaygate-signature';

/** Requests whose timestamp is further than this from the server's clock are refused (seconds). */
export const TIMESTAMP_WINDOW_S = 60;
/** Secrets shorter than this (in UTF-8 bytes) are refused by the configuration. */
export const MIN_SECRET_BYTES = 32;
export const MAX_SECRET_BYTES = 1024;
/** Feeder ids: what may appear in `[feed] keys`, `push_key_id` and a grant's source `feed:<id>`. */
export const FEEDER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const NONCE_RE = /^[A-Za-z0-9_-]{16,128}$/;
const TIMESTAMP_RE = /^[0-9]{1,12}$/;
const SIGNATURE_RE = /^v1=([0-9a-fA-F]{64})$/;

export interface SignedParts {
  readonly method: string;
  readonly path: string;
  readonly keyId: string;
  /** Unix seconds, as the decimal text sent in the header */
  readonly timestamp: string;
  readonly nonce: string;
  readonly body: Buffer | string;
}

/** The exact bytes that are signed (see the header comment). */
export function canonicalBytes(p: SignedParts): Buffer {
  const head = `${SIGNATURE_SCHEME}\n${p.method.toUpperCase()}\n${p.path}\n${p.keyId}\n${p.timestamp}\n${p.nonce}\n`;
  const body = typeof p.body === 'string' ? Buffer.from(p.body, 'utf8') : p.body;
  return Buffer.concat([Buffer.from(head, 'utf8'), body]);
}

function digest(secret: Buffer | string, p: SignedParts): Buffer {
  return createHmac('sha256', secret).update(canonicalBytes(p)).digest();
}

/** The `X-Relaygate-Signature` value for these parts: `v1=<hex>`. */
export function signature(secret: Buffer | string, p: SignedParts): string {
  return `v1=${digest(secret, p).toString('hex')}`;
}

export function newNonce(): string {
  return randomBytes(16).toString('hex');
}

/** Every header a signed request carries (Content-Type included); `now` in ms. */
export function signRequest(o: { keyId: string; secret: Buffer | string; method?: string; path: string; body: Buffer | string; now: number; nonce?: string }): Record<string, string> {
  const parts: SignedParts = {
    method: o.method ?? 'POST',
    path: o.path,
    keyId: o.keyId,
    timestamp: String(Math.floor(o.now / 1000)),
    nonce: o.nonce ?? newNonce(),
    body: o.body,
  };
  return {
    'content-type': 'application/json',
    [HEADER_KEY_ID]: parts.keyId,
    [HEADER_TIMESTAMP]: parts.timestamp,
    [HEADER_NONCE]: parts.nonce,
    [HEADER_SIGNATURE]: signature(o.secret, parts),
  };
}

/** Why a request was not authenticated. Logged for the operator; the client only ever sees 401. */
export type AuthFailure = 'missing_headers' | 'malformed_headers' | 'unknown_key' | 'bad_signature' | 'stale_timestamp' | 'replay' | 'nonce_memory_full';

export type AuthResult = { readonly ok: true; readonly keyId: string; /** which of the feeder's secrets matched (0 = first) */ readonly slot: number } | { readonly ok: false; readonly why: AuthFailure; readonly keyId?: string };

export interface FeederKeys {
  /** feeder id → its secrets (one, or two while rotating) */
  get(keyId: string): readonly Buffer[] | undefined;
}

export interface VerifyInput {
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Buffer;
  /** ms */
  readonly now: number;
}

const DUMMY_SECRET = randomBytes(32);

function header(h: VerifyInput['headers'], name: string): string | undefined {
  const v = h[name];
  return typeof v === 'string' ? v : undefined; // a repeated header (array) is malformed
}

/**
 * Checks the signature and the timestamp, then records the nonce in `nonces` (only for an authentic,
 * fresh request). Every failure is reported with its reason for the log.
 */
export function verifyRequest(keys: FeederKeys, nonces: NonceMemory, req: VerifyInput): AuthResult {
  const keyId = header(req.headers, HEADER_KEY_ID);
  const ts = header(req.headers, HEADER_TIMESTAMP);
  const nonce = header(req.headers, HEADER_NONCE);
  const sig = header(req.headers, HEADER_SIGNATURE);
  if (keyId === undefined || ts === undefined || nonce === undefined || sig === undefined) return { ok: false, why: 'missing_headers' };
  const m = SIGNATURE_RE.exec(sig);
  if (!FEEDER_ID_RE.test(keyId) || !TIMESTAMP_RE.test(ts) || !NONCE_RE.test(nonce) || m === null) return { ok: false, why: 'malformed_headers' };
  const given = Buffer.from(m[1]!.toLowerCase(), 'hex');
  const parts: SignedParts = { method: req.method, path: req.path, keyId, timestamp: ts, nonce, body: req.body };
  const secrets = keys.get(keyId);
  let slot = -1;
  // Every configured secret is tried (no early exit), and an unknown id costs the same HMAC.
  for (const [i, secret] of (secrets ?? [DUMMY_SECRET]).entries()) {
    if (timingSafeEqual(digest(secret, parts), given) && slot === -1) slot = i;
  }
  if (secrets === undefined) return { ok: false, why: 'unknown_key', keyId };
  if (slot === -1) return { ok: false, why: 'bad_signature', keyId };
  const tsMs = Number(ts) * 1000;
  if (Math.abs(req.now - tsMs) > TIMESTAMP_WINDOW_S * 1000) return { ok: false, why: 'stale_timestamp', keyId };
  const seen = nonces.remember(keyId, nonce, tsMs, req.now);
  if (seen !== 'new') return { ok: false, why: seen === 'full' ? 'nonce_memory_full' : 'replay', keyId };
  return { ok: true, keyId, slot };
}

/**
 * The nonces each feeder used within the timestamp window. A nonce must be remembered for as long as a
 * request carrying it could still pass the timestamp check: until its timestamp + the window. Memory is
 * bounded per feeder (`maxPerFeeder`); expired nonces are pruned as new ones arrive.
 */
export class NonceMemory {
  private readonly feeders = new Map<string, Map<string, number>>();

  constructor(
    private readonly maxPerFeeder = 200_000,
    private readonly windowMs = TIMESTAMP_WINDOW_S * 1000,
  ) {}

  /** 'new' (now remembered), 'seen' (a replay), or 'full' (cannot remember it: refuse the request). */
  remember(keyId: string, nonce: string, timestampMs: number, now: number): 'new' | 'seen' | 'full' {
    let seen = this.feeders.get(keyId);
    if (seen === undefined) {
      seen = new Map();
      this.feeders.set(keyId, seen);
    }
    const until = seen.get(nonce);
    if (until !== undefined && until >= now) return 'seen';
    this.prune(seen, now, false);
    if (seen.size >= this.maxPerFeeder) this.prune(seen, now, true);
    if (seen.size >= this.maxPerFeeder) return 'full';
    // Re-inserted (delete first) so the Map's insertion order stays roughly expiry order for prune().
    seen.delete(nonce);
    // +1 s: the timestamp has whole-second resolution.
    seen.set(nonce, timestampMs + this.windowMs + 1000);
    return 'new';
  }

  /** How many nonces are held for a feeder (tests, stats). */
  size(keyId: string): number {
    return this.feeders.get(keyId)?.size ?? 0;
  }

  /**
   * Drops expired nonces. Cheap pass: from the oldest insertion until the first live one (insertion order
   * is nearly expiry order: timestamps differ by at most two windows). Full pass: all of them.
   */
  private prune(seen: Map<string, number>, now: number, full: boolean): void {
    for (const [n, until] of seen) {
      if (until < now) seen.delete(n);
      else if (!full) break;
    }
  }
}
