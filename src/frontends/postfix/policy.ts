// The Postfix policy delegation service (SMTPD_POLICY_README): `check_policy_service inet:127.0.0.1:10031`
// or `unix:/path` asks relaygate, and relaygate's engine answers with a Postfix access(5) action.
//
// Protocol: a request is `name=value` lines ended by an empty line; the reply is `action=<action>` and an
// empty line. Postfix keeps the connection for many requests (one smtpd process, one SMTP session after
// another) and sends one request at a time; requests that arrive pipelined are answered in order.
// Every attribute Postfix 3.7 sends is accepted (test/fixtures/postfix/policy-request-*.txt) and unknown
// names are ignored, as the protocol demands of a server.
//
// Mapping (a thin adapter: protocol → DecisionRequest → protocol):
//   protocol_state RCPT → stage rcpt, MAIL → stage mail, both through `[policy] restrictions` (default
//   `permit_pop_before_smtp`), built with listEnd 'dunno': a restriction's permit → `OK`; the list running
//   out → `DUNNO` (Postfix's own restrictions after check_policy_service, reject_unauth_destination, decide);
//   a reject or defer → `<code> <dsn> <why>` (`553 5.7.1 not owned by user bob`: Postfix writes its own
//   `<address>: Sender address rejected: ` head in front, so the engine's is left out); a lookup failure
//   (access map, table) or internal error → `[policy] tempfail_action` (default `DEFER_IF_PERMIT Service
//   temporarily unavailable`), never OK.
//   Other states (CONNECT, HELO/EHLO, VRFY, ETRN, END-OF-MESSAGE) → DUNNO: relaygate decides relaying and
//   senders only. DATA → `PREPEND <prepend_header>: ...` when that header is configured and this connection
//   answered OK for the same message (`instance`) at RCPT: Postfix takes one action per reply, and PREPEND
//   does not permit (it goes on like DUNNO), so the "why was this client trusted" header is added at DATA
//   (check_policy_service in smtpd_data_restrictions too; contrib/postfix/policy.main.cf).
//
// Limits (a request outside them is logged as `policy_malformed` and the connection closed without a reply;
// Postfix retries once, then applies smtpd_policy_service_default_action): a line longer than
// MAX_LINE_BYTES, more than MAX_ATTRIBUTES attributes or MAX_REQUEST_BYTES in one request, control
// characters or NUL (binary junk), a line without `=`, an attribute name that is not [a-z0-9_], a repeated
// attribute among those relaygate reads, a `request` other than smtpd_access_policy, an empty request, more
// than MAX_PIPELINED requests waiting, a request left unfinished for REQUEST_TIMEOUT_MS or a connection
// closed in the middle of one.
// A connection idle for IDLE_TIMEOUT_MS (longer than Postfix's own 300 s) is closed quietly.
// Security: the socket is unauthenticated (Postfix has no other way): only loopback/unix or `clients` may
// connect (listen.ts). Postfix is trusted for what it says (client_address, sasl_username: Postfix only
// sends a SASL name after a successful AUTH); the values are still normalized (normalizeIp, the engine's
// address parser), and nothing from a request can put a newline into a reply or a log line.

import type net from 'node:net';
import type { Decision, DecisionRequest, Engine, Stage } from '../../engine/index.ts';
import type { Logger } from '../../log/logger.ts';
import { printable } from '../../log/format.ts';
import { normalizeIp, type CidrSet } from '../../net/index.ts';
import { listenStream, serveRequests, timeoutSweep, type ListenSpec, type StreamListener, type TimedConnection } from './listen.ts';

export const MAX_LINE_BYTES = 16_384;
export const MAX_ATTRIBUTES = 256;
export const MAX_REQUEST_BYTES = 65_536;
export { MAX_PIPELINED } from './listen.ts';
export const REQUEST_TIMEOUT_MS = 30_000;
export const IDLE_TIMEOUT_MS = 600_000;

export const DEFAULT_TEMPFAIL_ACTION = 'DEFER_IF_PERMIT Service temporarily unavailable';

/**
 * The attributes relaygate reads. Every line of a request is checked (syntax, limits), but only these are
 * kept: a repeated one is an error (no "second client_address" can slip in); the rest — ccert_*, encryption_*,
 * size, stress, ... and whatever a later Postfix adds — are ignored, as the protocol asks.
 */
export const USED_ATTRIBUTES = ['request', 'protocol_state', 'protocol_name', 'client_address', 'client_name', 'helo_name', 'sender', 'recipient', 'sasl_method', 'sasl_username', 'instance'] as const;
export type UsedAttribute = (typeof USED_ATTRIBUTES)[number];
/** A parsed request: the used attributes it carried (only these names are ever set: a hostile name reaches nothing). */
export type PolicyAttributes = { readonly [K in UsedAttribute]?: string | undefined };

/** One object shape for every request (faster than a dictionary): each used attribute, undefined until sent. */
class ParsedAttributes implements Record<UsedAttribute, string | undefined> {
  request: string | undefined = undefined;
  protocol_state: string | undefined = undefined;
  protocol_name: string | undefined = undefined;
  client_address: string | undefined = undefined;
  client_name: string | undefined = undefined;
  helo_name: string | undefined = undefined;
  sender: string | undefined = undefined;
  recipient: string | undefined = undefined;
  sasl_method: string | undefined = undefined;
  sasl_username: string | undefined = undefined;
  instance: string | undefined = undefined;
}

/** USED_ATTRIBUTES by name length, with their bytes: an unused attribute is skipped without decoding its name. */
const USED_BY_LENGTH: ReadonlyArray<ReadonlyArray<{ readonly name: UsedAttribute; readonly bytes: Buffer }>> = (() => {
  const t: Array<Array<{ name: UsedAttribute; bytes: Buffer }>> = [];
  for (const name of USED_ATTRIBUTES) (t[name.length] ??= []).push({ name, bytes: Buffer.from(name, 'latin1') });
  return t;
})();

function junkError(c: number): string {
  return `control character 0x${c.toString(16).padStart(2, '0')} in a request (binary junk)`;
}

const EMPTY = Buffer.alloc(0);

/**
 * Incremental parser for one connection: feed() the bytes as they come, get back the requests completed by
 * them, or the reason the stream is malformed (after which the connection must be closed).
 * It works on the bytes (one pass, no decoding of the ~20 attributes relaygate does not read): a line is
 * complete at its LF; the value of a used attribute is decoded then, as UTF-8 (invalid sequences become
 * U+FFFD; a character split across chunks is whole by then). The limits count bytes.
 */
export class PolicyRequestParser {
  /** the bytes of an unfinished line */
  #pending: Buffer = EMPTY;
  #attrs: ParsedAttributes | undefined = undefined;
  #count = 0;
  #bytes = 0;

  /** true while a request has begun but its empty line has not arrived */
  get midRequest(): boolean {
    return this.#attrs !== undefined || this.#pending.length > 0;
  }

  feed(chunk: Buffer): { requests: PolicyAttributes[]; error?: string } {
    const requests: PolicyAttributes[] = [];
    const data = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    const n = data.length;
    // One pass: lines end at LF; C0 controls other than TAB, LF and CR, DEL, and a CR not followed by LF (a CR
    // ending the data may be the first half of a CRLF split across chunks) are junk. The attribute name (the
    // bytes before the first "=") is checked on the way: [a-z0-9_]+. high: the value has non-ASCII bytes.
    let start = 0;
    let eq = -1;
    let nameBad = false;
    let high = false;
    for (let i = 0; i < n; i++) {
      const c = data[i]!;
      if (c > 31) {
        if (c === 127) return { requests, error: junkError(c) };
        if (eq === -1) {
          if (c === 61) eq = i;
          else if (!((c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 95)) nameBad = true;
        } else if (c > 127) high = true;
        continue;
      }
      if (c === 9) continue;
      if (c === 13) {
        if (i + 1 < n && data[i + 1] !== 10) return { requests, error: junkError(c) };
        continue;
      }
      if (c !== 10) return { requests, error: junkError(c) };
      let end = i;
      if (end > start && data[end - 1] === 13) end--; // tolerate CRLF (people test with telnet)
      if (end - start > MAX_LINE_BYTES) return { requests, error: `line longer than ${MAX_LINE_BYTES} bytes` };
      if (end === start) {
        if (this.#attrs === undefined) return { requests, error: 'empty request (an empty line with no attributes)' };
        const attrs = this.#attrs;
        this.#attrs = undefined;
        this.#count = 0;
        this.#bytes = 0;
        const bad = checkRequest(attrs);
        if (bad !== undefined) return { requests, error: bad };
        requests.push(attrs);
      } else {
        const err = this.#line(data, start, end, eq, nameBad, high);
        if (err !== undefined) return { requests, error: err };
      }
      start = i + 1;
      eq = -1;
      nameBad = false;
      high = false;
    }
    // a copy: the rest of the chunk is not kept alive by an unfinished line
    this.#pending = start === n ? EMPTY : Buffer.from(data.subarray(start));
    if (this.#pending.length > MAX_LINE_BYTES + 1) return { requests, error: `line longer than ${MAX_LINE_BYTES} bytes` };
    return { requests };
  }

  /** One `name=value` line [start, end): its first "=" at eq (-1: none); nameBad: a byte outside [a-z0-9_] before it. */
  #line(data: Buffer, start: number, end: number, eq: number, nameBad: boolean, high: boolean): string | undefined {
    if (eq === -1 || eq >= end) return 'line without "=" (expected name=value)';
    if (nameBad || eq === start) return `bad attribute name ${JSON.stringify(printable(data.toString('utf8', start, Math.min(eq, start + 64))))}`;
    if (++this.#count > MAX_ATTRIBUTES) return `more than ${MAX_ATTRIBUTES} attributes in one request`;
    this.#bytes += end - start + 1;
    if (this.#bytes > MAX_REQUEST_BYTES) return `request larger than ${MAX_REQUEST_BYTES} bytes`;
    const attrs = (this.#attrs ??= new ParsedAttributes());
    const candidates = USED_BY_LENGTH[eq - start];
    if (candidates === undefined) return undefined;
    next: for (let k = 0; k < candidates.length; k++) {
      const { name, bytes } = candidates[k]!;
      for (let j = 0; j < bytes.length; j++) if (data[start + j] !== bytes[j]) continue next;
      if (attrs[name] !== undefined) return `attribute ${name} repeated`;
      attrs[name] = data.toString(high ? 'utf8' : 'latin1', eq + 1, end);
      break;
    }
    return undefined;
  }
}

function checkRequest(attrs: PolicyAttributes): string | undefined {
  const req = attrs.request;
  if (req === undefined) return 'request without request=smtpd_access_policy';
  if (req !== 'smtpd_access_policy') return `unknown request type ${JSON.stringify(printable(req.slice(0, 64)))} (only smtpd_access_policy exists)`;
  return undefined;
}

export interface PolicyServiceOptions {
  readonly listen: ListenSpec;
  /** TCP peers allowed to connect (unix sockets: the directory's permissions decide) */
  readonly clients: CidrSet;
  readonly socketMode: number;
  /** built from `[policy] restrictions` with listEnd 'dunno' (policyEngineOptions()) */
  readonly engine: Engine;
  /** the action for a lookup failure; must be temporary (validation checks) */
  readonly tempfailAction: string;
  /** header name for the DATA-time PREPEND; undefined = no header */
  readonly prependHeader?: string | undefined;
  readonly logger: Logger;
  /** tests shorten these; not configuration keys */
  readonly requestTimeoutMs?: number;
  readonly idleTimeoutMs?: number;
}

export interface PolicyService {
  /** where it listens (`127.0.0.1:10031`, `unix:/path`) */
  readonly address: string;
  /** requests answered, connections closed for malformed input, lookup failures answered with tempfail_action */
  stats(): { requests: number; malformed: number; tempfail: number; connections: number };
  close(graceMs?: number): Promise<void>;
}

/** Per-connection memory for the DATA-time header: the message (instance) this connection answered OK for. */
interface Trusted {
  instance: string;
  header: string;
}

const STAGES: Readonly<Record<string, Stage>> = { RCPT: 'rcpt', MAIL: 'mail' };
const REPLY_OK = 'action=OK\n\n';
const REPLY_DUNNO = 'action=DUNNO\n\n';

export async function startPolicyService(o: PolicyServiceOptions): Promise<PolicyService> {
  const { engine, logger } = o;
  const requestTimeoutMs = o.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  const idleTimeoutMs = o.idleTimeoutMs ?? IDLE_TIMEOUT_MS;
  const counters = { requests: 0, malformed: 0, tempfail: 0 };
  const conns = new WeakMap<net.Socket, TimedConnection>();
  const sweep = timeoutSweep(requestTimeoutMs, idleTimeoutMs);
  const tempfailReply = `action=${o.tempfailAction}\n\n`;

  /** The framed reply (`action=...` and the empty line) to one request. */
  function answer(attrs: PolicyAttributes, peer: string, trusted: { value: Trusted | undefined }): string | Promise<string> {
    const state = attrs['protocol_state'] ?? '';
    const stage = STAGES[state];
    if (stage === undefined) {
      if (state === 'DATA' && o.prependHeader !== undefined) {
        const t = trusted.value;
        if (t !== undefined && t.instance === (attrs['instance'] ?? '')) {
          trusted.value = undefined;
          return `action=PREPEND ${o.prependHeader}: ${t.header}\n\n`;
        }
      }
      return REPLY_DUNNO;
    }
    const req: DecisionRequest = {
      stage,
      clientIp: attrs['client_address'] ?? '',
      clientName: attrs['client_name'],
      helo: attrs['helo_name'],
      protocol: attrs['protocol_name'],
      saslUser: nonEmpty(attrs['sasl_username']),
      saslMethod: nonEmpty(attrs['sasl_method']),
      sender: attrs['sender'] ?? '',
      recipient: stage === 'rcpt' ? attrs['recipient'] : undefined,
    };
    return engine.decide(req).then((d) => verdict(d, req, attrs, peer, trusted));
  }

  function verdict(d: Decision, req: DecisionRequest, attrs: PolicyAttributes, peer: string, trusted: { value: Trusted | undefined }): string {
    if (d.failed === true) {
      counters.tempfail++;
      logger.warn(
        { event: 'policy_tempfail', client_ip: normalizeIp(req.clientIp) ?? printable(req.clientIp), stage: req.stage, restriction: d.decidedBy, action: o.tempfailAction, peer },
        `policy: lookup failed (${d.code} ${d.dsn} ${d.text}); answering ${o.tempfailAction}`,
      );
      return tempfailReply;
    }
    if (d.action === 'permit') {
      if (d.decidedBy === null) return REPLY_DUNNO;
      if (req.stage === 'rcpt' && o.prependHeader !== undefined) trusted.value = { instance: attrs['instance'] ?? '', header: trustHeader(d, req) };
      return REPLY_OK;
    }
    return `action=${oneLine(`${d.code} ${d.dsn} ${postfixText(d.text ?? '')}`)}\n\n`;
  }

  const listener: StreamListener = await listenStream({
    what: 'policy',
    onError: () => sweep.stop(),
    spec: o.listen,
    clients: o.clients,
    socketMode: o.socketMode,
    logger,
    busy: (s) => conns.get(s)?.busy ?? false,
    onConnection(sock, peer) {
      const parser = new PolicyRequestParser();
      const trusted: { value: Trusted | undefined } = { value: undefined };
      logger.debug({ event: 'policy_connect', peer }, `policy: connect from ${peer}`);
      serveRequests<PolicyAttributes>({
        sock,
        sweep,
        conns,
        parser,
        feed: (chunk) => parser.feed(chunk),
        answer: (attrs) => answer(attrs, peer, trusted),
        onInternalError(err) {
          // engine.decide() answers its own failures; this is a bug here: still temporary, never OK
          counters.tempfail++;
          logger.error({ event: 'policy_internal_error', err, peer }, `policy: internal error: ${(err as Error).message}; answering ${o.tempfailAction}`);
          return tempfailReply;
        },
        answered: () => void counters.requests++,
        onMalformed(why) {
          counters.malformed++;
          logger.warn({ event: 'policy_malformed', peer, reason: why }, `policy: malformed request from ${peer}: ${why}; closing the connection`);
        },
        requestTimeoutText: `request not finished within ${requestTimeoutMs / 1000} s (no empty line)`,
        eofText: 'connection closed in the middle of a request (no empty line)',
        onIdleClose: () => logger.debug({ event: 'policy_idle_close', peer }, `policy: closing idle connection from ${peer}`),
        onClose: () => logger.debug({ event: 'policy_disconnect', peer }, `policy: disconnect from ${peer}`),
      });
    },
  });
  logger.info({ event: 'policy_listening', address: listener.address }, `policy service listening on ${listener.address}`);
  return {
    address: listener.address,
    stats: () => ({ ...counters, connections: listener.connections.size }),
    async close(graceMs) {
      await listener.close(graceMs);
      sweep.stop();
    },
  };
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v === '' ? undefined : v;
}

// `<bob@remote.example>: Relay access denied`, `<alice@example.com>: Sender address rejected: not owned by ...`
const POSTFIX_PREFIX = /^<[^>]*>: (?:(?:Sender address|Recipient address|Client host|Helo command|Data command|End-of-data|Etrn command|Unverified Client host) rejected: )?/;

/**
 * The engine's reply text without its `<name>: Class rejected: ` head: Postfix puts its own head on every
 * policy reply (`<rcpt>: Recipient address rejected: ` in smtpd_relay_restrictions, `<sender>: Sender address
 * rejected: ` in smtpd_sender_restrictions), so sending ours too would print it twice.
 */
export function postfixText(text: string): string {
  const t = text.replace(POSTFIX_PREFIX, '');
  return t === '' ? text : t;
}

/** A reply or header must stay one line whatever a client put into an address. */
function oneLine(s: string): string {
  return printable(s);
}

/** The value of the DATA-time header: which restriction trusted the client, and the grant's user if any. */
export function trustHeader(d: Decision, req: DecisionRequest): string {
  const ip = normalizeIp(req.clientIp) ?? 'unknown';
  let v = `${d.decidedBy ?? 'permit'} client=[${ip}]`;
  if (d.decidedBy === 'permit_pop_before_smtp' && d.grant !== undefined) {
    if (d.grant.user !== null) v += ` user=${d.grant.user}`;
    if (d.grant.service !== null) v += ` service=${d.grant.service}`;
    v += ` expires=${new Date(d.grant.expires).toISOString()}`;
  } else if (d.decidedBy === 'permit_sasl_authenticated' && req.saslUser !== undefined) {
    v += ` sasl_username=${req.saslUser}`;
  }
  return oneLine(v).slice(0, 900);
}
