// The socketmap server (Postfix socketmap_table(5)): `check_client_access socketmap:inet:127.0.0.1:10032:grant`
// and `smtpd_sender_login_maps = socketmap:inet:127.0.0.1:10032:sender_login` read relaygate's tables live.
//
// Protocol: netstrings (`<decimal length>:<payload>,`), request payload `<mapname> <key>`, reply payload
// `OK <value>`, `NOTFOUND `, `TEMP <reason>`, `TIMEOUT <reason>` or `PERM <reason>`, at most 100,000 bytes each
// way. Postfix keeps the connection (idle 10 s, ttl 100 s) and sends one lookup at a time; pipelined lookups
// are answered in order.
//
// Maps (names configurable in [socketmap]):
//   grant_map (default `grant`): the key is the client IP (Postfix check_client_access asks for the hostname
//     first, which is `unknown` without reverse DNS, then the IP). An unexpired grant → `OK <grant_action>`
//     (`OK` by default; `expiry` answers the expiry time in seconds since the epoch, which Postfix's access
//     maps treat as OK, like DRAC's map); anything that is not an IP literal — hostnames, `unknown` —
//     → `NOTFOUND`; a failing access map → `TEMP`, which Postfix turns into `451 4.3.0`.
//   sender_login_map (default `sender_login`): IP-independent, as Postfix's smtpd_sender_login_maps expects:
//     the key is a sender address (or `@domain`), the value the logins that own it, read from relaygate's own
//     `sender_login_maps` tables — the ones the engine's sender-login checks use — so Postfix and relaygate
//     share one ownership list. Postfix compares those owners with its SASL login only; a POP-before-SMTP
//     user's own addresses are checked by the policy service, which knows the grant's user.
// Malformed netstrings (a non-digit or leading zero in the length, more than 6 digits, a length over
// MAX_NETSTRING, no `,` after the payload, control characters in a request) are logged as
// `socketmap_malformed` and the connection closed; a well-formed request for an unknown map, or without a
// key, gets `PERM` (Postfix logs it and answers 451).
// Security: unauthenticated like every Postfix table protocol: loopback/unix or `clients` only
// (listen.ts). A key is never trusted: `unknown` and every other non-IP can never be OK for the grant map.

import type net from 'node:net';
import type { GrantLookup } from '../../engine/index.ts';
import { parseAddress, addressKey } from '../../engine/address.ts';
import type { Clock } from '../../clock.ts';
import type { Logger } from '../../log/logger.ts';
import { printable } from '../../log/format.ts';
import { normalizeIp, type CidrSet } from '../../net/index.ts';
import type { LookupTable } from '../../tables/index.ts';
import { listenStream, serveRequests, timeoutSweep, type ListenSpec, type StreamListener, type TimedConnection } from './listen.ts';

/** socketmap_table(5): replies "must not exceed 100000 bytes"; requests are held to the same bound. */
export const MAX_NETSTRING = 100_000;
export { MAX_PIPELINED } from './listen.ts';
export const REQUEST_TIMEOUT_MS = 30_000;
export const IDLE_TIMEOUT_MS = 600_000;

/**
 * Incremental netstring reader: feed() bytes, get the complete payloads, or the reason the stream is
 * malformed (close the connection then).
 */
export class NetstringParser {
  #buf: Buffer = Buffer.alloc(0);

  get midRequest(): boolean {
    return this.#buf.length > 0;
  }

  feed(chunk: Buffer): { payloads: Buffer[]; error?: string } {
    const payloads: Buffer[] = [];
    let buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    for (;;) {
      if (buf.length === 0) break;
      const colon = buf.indexOf(58 /* : */);
      const digitsEnd = colon === -1 ? buf.length : colon;
      for (let i = 0; i < digitsEnd; i++) {
        const c = buf[i]!;
        if (c < 48 || c > 57) return { payloads, error: `netstring length has a non-digit (0x${c.toString(16).padStart(2, '0')})` };
      }
      if (digitsEnd > 6) return { payloads, error: `netstring length has more than 6 digits (limit ${MAX_NETSTRING} bytes)` };
      if (colon === -1) break; // length not complete yet
      if (colon === 0) return { payloads, error: 'netstring without a length' };
      if (colon > 1 && buf[0] === 48) return { payloads, error: 'netstring length with a leading zero' };
      const len = Number(buf.toString('latin1', 0, colon));
      if (len > MAX_NETSTRING) return { payloads, error: `netstring of ${len} bytes (limit ${MAX_NETSTRING})` };
      const total = colon + 1 + len + 1;
      if (buf.length < total) break;
      if (buf[total - 1] !== 44 /* , */) return { payloads, error: 'netstring not terminated by ","' };
      payloads.push(buf.subarray(colon + 1, colon + 1 + len));
      buf = buf.subarray(total);
    }
    this.#buf = buf.length === 0 ? Buffer.alloc(0) : Buffer.from(buf); // copy: do not pin the socket's chunk
    return { payloads };
  }
}

export function netstring(payload: string): string {
  return `${Buffer.byteLength(payload)}:${payload},`;
}

export interface SocketmapOptions {
  readonly listen: ListenSpec;
  readonly clients: CidrSet;
  readonly socketMode: number;
  readonly grants: GrantLookup;
  readonly clock: Clock;
  /** map name for the grant map */
  readonly grantMap: string;
  /** value for a grant: an access(5) action such as `OK`, or `expiry` */
  readonly grantAction: string;
  /** map name for the sender-login map */
  readonly senderLoginMap: string;
  /** relaygate's sender_login_maps tables, in configuration order */
  readonly senderLoginTables: readonly LookupTable[];
  readonly logger: Logger;
  /** tests shorten these; not configuration keys */
  readonly requestTimeoutMs?: number;
  readonly idleTimeoutMs?: number;
}

export interface SocketmapServer {
  readonly address: string;
  stats(): { lookups: number; malformed: number; temp: number; connections: number };
  close(graceMs?: number): Promise<void>;
}

/** The first C0 control byte or DEL in a request, or undefined. */
function controlByte(p: Buffer): number | undefined {
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c < 32 || c === 127) return c;
  }
  return undefined;
}
const NOTFOUND = 'NOTFOUND ';

/** Reply payload text stays printable and within the protocol's bound. */
function reason(kind: 'TEMP' | 'PERM', why: string): string {
  return `${kind} ${printable(why).slice(0, 512)}`;
}

export async function startSocketmap(o: SocketmapOptions): Promise<SocketmapServer> {
  const { logger } = o;
  const requestTimeoutMs = o.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  const idleTimeoutMs = o.idleTimeoutMs ?? IDLE_TIMEOUT_MS;
  const counters = { lookups: 0, malformed: 0, temp: 0 };
  const conns = new WeakMap<net.Socket, TimedConnection>();
  const sweep = timeoutSweep(requestTimeoutMs, idleTimeoutMs);

  async function grantLookup(key: string, peer: string): Promise<string> {
    // `unknown` is what Postfix sends for a client without reverse DNS: never a grant (nor any other name).
    if (key === 'unknown') return NOTFOUND;
    const ip = normalizeIp(key);
    if (ip === undefined) return NOTFOUND;
    try {
      const g = await o.grants.lookup(ip, o.clock());
      if (g === undefined) return NOTFOUND;
      return `OK ${o.grantAction === 'expiry' ? String(Math.floor(g.expires / 1000)) : o.grantAction}`;
    } catch (err) {
      counters.temp++;
      const why = `access map lookup of ${ip} failed: ${(err as Error)?.message ?? String(err)}`;
      logger.warn({ event: 'socketmap_temp', map: o.grantMap, client_ip: ip, peer, err: (err as Error)?.message }, `socketmap: ${why}; answering TEMP`);
      return reason('TEMP', 'access map lookup failed');
    }
  }

  async function senderLoginLookup(key: string, peer: string): Promise<string> {
    let lookupKey: string;
    let partial = false;
    if (key.startsWith('@')) {
      partial = true;
      lookupKey = `@${key.slice(1).toLowerCase().replace(/\.$/, '')}`;
    } else {
      const a = parseAddress(key);
      if (a.isNull || !a.valid) return NOTFOUND;
      lookupKey = addressKey(a);
    }
    for (const t of o.senderLoginTables) {
      if (partial && !t.partialKeys) continue;
      try {
        const v = await t.get(lookupKey);
        if (v !== undefined) {
          const owners = v.split(/[\s,]+/).filter((s) => s !== '');
          return owners.length === 0 ? NOTFOUND : `OK ${printable(owners.join(','))}`;
        }
      } catch (err) {
        counters.temp++;
        logger.warn({ event: 'socketmap_temp', map: o.senderLoginMap, table: t.spec, peer, err: (err as Error)?.message }, `socketmap: ${t.spec}: lookup of ${JSON.stringify(printable(lookupKey))} failed: ${(err as Error)?.message}; answering TEMP`);
        return reason('TEMP', `${t.spec} lookup failed`);
      }
    }
    return NOTFOUND;
  }

  async function answer(payload: Buffer, peer: string): Promise<string> {
    const text = payload.toString('utf8');
    const sp = text.indexOf(' ');
    if (sp <= 0 || sp === text.length - 1) return reason('PERM', 'bad request: expected "<mapname> <key>"');
    const name = text.slice(0, sp);
    const key = text.slice(sp + 1);
    if (name === o.grantMap) return grantLookup(key, peer);
    if (name === o.senderLoginMap) return senderLoginLookup(key, peer);
    logger.warn({ event: 'socketmap_unknown_map', map: printable(name.slice(0, 100)), peer }, `socketmap: unknown map name ${JSON.stringify(printable(name.slice(0, 100)))} from ${peer}; known: ${o.grantMap}, ${o.senderLoginMap}`);
    return reason('PERM', `unknown map name "${name.slice(0, 100)}"; relaygate serves "${o.grantMap}" and "${o.senderLoginMap}"`);
  }

  const listener: StreamListener = await listenStream({
    what: 'socketmap',
    spec: o.listen,
    clients: o.clients,
    socketMode: o.socketMode,
    logger,
    onError: () => sweep.stop(),
    busy: (s) => conns.get(s)?.busy ?? false,
    onConnection(sock, peer) {
      const parser = new NetstringParser();
      serveRequests<Buffer>({
        sock,
        sweep,
        conns,
        parser,
        feed(chunk) {
          const r = parser.feed(chunk);
          const requests: Buffer[] = [];
          for (const p of r.payloads) {
            const junk = controlByte(p);
            if (junk !== undefined) return { requests, error: `control character 0x${junk.toString(16).padStart(2, '0')} in a request (binary junk)` };
            requests.push(p);
          }
          return { requests, error: r.error };
        },
        answer: async (p) => netstring(await answer(p, peer)),
        onInternalError(err) {
          counters.temp++;
          logger.error({ event: 'socketmap_internal_error', err, peer }, `socketmap: internal error: ${(err as Error).message}; answering TEMP`);
          return netstring(reason('TEMP', 'internal error'));
        },
        answered(p, reply) {
          counters.lookups++;
          if (logger.isLevelEnabled('debug')) logger.debug({ event: 'socketmap_lookup', peer, request: printable(p.toString('utf8').slice(0, 200)), reply }, `socketmap: ${printable(p.toString('utf8').slice(0, 200))} -> ${reply}`);
        },
        onMalformed(why) {
          counters.malformed++;
          logger.warn({ event: 'socketmap_malformed', peer, reason: why }, `socketmap: malformed request from ${peer}: ${why}; closing the connection`);
        },
        requestTimeoutText: `netstring not finished within ${requestTimeoutMs / 1000} s`,
        eofText: 'connection closed in the middle of a netstring',
      });
    },
  });
  logger.info({ event: 'socketmap_listening', address: listener.address, maps: [o.grantMap, o.senderLoginMap] }, `socketmap listening on ${listener.address} (maps ${o.grantMap}, ${o.senderLoginMap})`);
  if (o.senderLoginTables.length === 0) {
    logger.warn({ event: 'socketmap_no_sender_login_maps', map: o.senderLoginMap }, `socketmap: map ${o.senderLoginMap} answers NOTFOUND for every sender: no sender_login_maps are configured`);
  }
  return {
    address: listener.address,
    stats: () => ({ ...counters, connections: listener.connections.size }),
    async close(graceMs) {
      await listener.close(graceMs);
      sweep.stop();
    },
  };
}
