// The upstream hop: every message the gateway accepts goes to `smtp.relayhost` over a small pool of reused
// nodemailer SMTPConnections, with before-queue semantics — the gateway keeps no queue, so the client's
// DATA is answered only after the upstream answered the message:
//
//   upstream 250                      → ok, with the upstream's reply (its queue id goes into our 250)
//   upstream 4xx/5xx (MAIL, RCPT, DATA, end of data) → the same code class back, the upstream's DSN and text
//   connect/TLS/AUTH failure, timeout, connection lost at any point → 451 4.4.1 (never a 250, never a 5xx)
//
// Recipients: the client's RCPTs were already accepted by the engine. When the upstream refuses SOME of them,
// the whole message is refused (all-or-nothing): the body is never sent, the upstream transaction is
// dropped, and the client gets the refusal (4xx if any refusal was temporary, else the first 5xx). SMTP has
// only one reply to DATA, and a 250 would acknowledge recipients the upstream never took — with no queue
// here, their mail would be lost. The client retries or bounces the message as a whole; nothing is
// delivered twice, because the upstream never saw the end of the data.
//
// Streaming: the body goes through a GatedBody stream. nodemailer pipes it into the upstream socket only
// after the upstream answered DATA with 354; that pipe() call is where the recipient replies are checked
// (above). The final `.` is sent only when the gateway ends the body, which it does only when the client's
// message arrived complete, within the size limit and with canonical line endings; abort() instead closes
// the upstream connection mid-DATA, so the upstream discards the partial message.
//
// Pool: at most `poolSize` idle connections are kept; more are opened when more messages are in flight
// (bounded by the client limits). A connection idle longer than IDLE_CHECK_MS is probed with RSET before
// reuse (the upstream may have closed it); a connection that saw any failure is closed, never reused.
//
// XFORWARD (Postfix XFORWARD_README): when enabled and the upstream advertises it, the client's NAME, ADDR,
// PROTO and HELO are sent before each MAIL FROM (Postfix resets them after every transaction).
//
// nodemailer has no public API for three things this needs; UpstreamConnection reaches them through its
// internals in one place, pinned by nodemailer's exact version in package-lock.json and by the tests
// (XFORWARD, partial rejection): `_ehloLines` (EHLO keywords), `_sendCommand` + `_responseActions` (one
// command and its reply) and `_envelope` (the recipients the upstream refused).
//
// Security: the upstream is configured by the operator (an IP literal). Its reply texts are relayed to
// clients, so they are reduced to printable ASCII and cut at 400 characters. TLS to the upstream verifies
// the certificate against the system CAs (NODE_EXTRA_CA_CERTS adds one); credentials (relayhost_auth)
// are never logged.

import { PassThrough } from 'node:stream';
import type { ConnectionOptions } from 'node:tls';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { Logger } from '../../log/logger.ts';

/** An idle connection older than this is probed with RSET before it carries a message. */
export const IDLE_CHECK_MS = 5_000;

export interface UpstreamOptions {
  readonly host: string;
  readonly port: number;
  readonly tls: 'none' | 'starttls' | 'tls';
  readonly auth?: { readonly username: string; readonly password: string } | undefined;
  /** connect, greeting, and inactivity limit for every step, ms */
  readonly timeoutMs: number;
  /** idle connections kept for reuse */
  readonly poolSize: number;
  /** our EHLO name */
  readonly ehloName: string;
  /** send XFORWARD when the upstream offers it */
  readonly xforward: boolean;
  readonly logger: Logger;
  /** extra TLS client options (tests pass the sink's CA); the system CAs are used otherwise */
  readonly tlsOptions?: ConnectionOptions | undefined;
}

export interface XForwardAttrs {
  /** verified client name, or undefined for [UNAVAILABLE] */
  readonly name?: string | undefined;
  readonly addr: string;
  readonly port?: number | undefined;
  readonly proto: string;
  readonly helo?: string | undefined;
}

export interface ForwardRequest {
  readonly from: string;
  readonly to: readonly string[];
  readonly use8BitMime: boolean;
  readonly xforward?: XForwardAttrs | undefined;
}

export type ForwardResult =
  | {
      readonly ok: true;
      /** the upstream's final reply, sanitized */
      readonly reply: string;
      readonly queueId: string | undefined;
      /** `127.0.0.1[127.0.0.1]:10025` */
      readonly relay: string;
    }
  | {
      readonly ok: false;
      readonly code: number;
      readonly dsn: string;
      readonly text: string;
      /** for the log: what happened, with the upstream's raw reply or the error */
      readonly detail: string;
      readonly relay: string;
    };

/** The reply for "upstream unreachable / timed out / lost" (issue 4: 451 4.4.1). */
export const UNAVAILABLE = Object.freeze({ code: 451, dsn: '4.4.1', text: 'Error: upstream mail server unavailable, try again later' });

/** One message on its way upstream. */
export interface ForwardJob {
  /** write the message (header first) here; end() it only when the message is complete and acceptable */
  readonly body: PassThrough;
  /** settles once: the upstream's verdict, or UNAVAILABLE, or the abort */
  readonly result: Promise<ForwardResult>;
  /** drop the upstream transaction without sending the end of data; result settles as not ok */
  abort(why: string): void;
}

interface Internals {
  _ehloLines?: string[];
  _envelope?: { rejected?: string[]; rejectedErrors?: Array<{ response?: string; responseCode?: number }> } | false;
  _responseActions: Array<(str: string) => void>;
  _sendCommand(str: string): void;
  _destroyed: boolean;
}

/** nodemailer's SMTPConnection plus the three internals listed in the header. */
export class UpstreamConnection extends SMTPConnection {
  /** when the connection last finished a message (pool bookkeeping) */
  idleSince = 0;
  #failed = false;

  private get internals(): Internals {
    return this as unknown as Internals;
  }

  get usable(): boolean {
    return !this.#failed && !this.internals._destroyed && !this.destroyed;
  }

  markFailed(): void {
    this.#failed = true;
  }

  /** The EHLO keyword's parameters (e.g. XFORWARD → ['NAME', 'ADDR', ...]) or undefined when not offered. */
  extension(keyword: string): string[] | undefined {
    const k = keyword.toUpperCase();
    for (const line of this.internals._ehloLines ?? []) {
      const parts = line.trim().split(/\s+/);
      if (parts[0]!.toUpperCase() === k) return parts.slice(1).map((p) => p.toUpperCase());
    }
    return undefined;
  }

  /** Sends one command and resolves with the reply; rejects when the connection ends first. */
  command(line: string, timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      if (!this.usable) {
        reject(new Error('connection not usable'));
        return;
      }
      let done = false;
      const finish = (err: Error | undefined, reply?: string) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.off('end', onEnd);
        if (err) reject(err);
        else resolve(reply!);
      };
      const onEnd = () => finish(new Error('connection closed'));
      const timer = setTimeout(() => {
        this.markFailed();
        this.close();
        finish(new Error(`no reply to ${line.split(' ', 1)[0]} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.once('end', onEnd);
      this.internals._responseActions.push((str) => finish(undefined, str));
      this.internals._sendCommand(line);
    });
  }

  /** Replies of the recipients the upstream refused in the current envelope. */
  rejectedReplies(): string[] {
    const env = this.internals._envelope;
    if (!env || !Array.isArray(env.rejectedErrors)) return [];
    return env.rejectedErrors.map((e) => (typeof e.response === 'string' ? e.response : `451 4.4.1 recipient refused`));
  }
}

/** PassThrough whose pipe() first asks `gate` (see "Streaming" in the header). */
class GatedBody extends PassThrough {
  gate: (() => boolean) | undefined;
  override pipe<T extends NodeJS.WritableStream>(destination: T, options?: { end?: boolean }): T {
    if (this.gate !== undefined && !this.gate()) return destination;
    return super.pipe(destination, options);
  }
}

/** `550 5.1.1 <x>: text` (possibly multi-line) → code, DSN and one line of printable text. */
export function parseReply(raw: string): { code: number; dsn: string; text: string } {
  const lines = String(raw).split(/\r?\n/).filter((l) => l.trim() !== '');
  const first = /^(\d{3})/.exec(lines[0] ?? '');
  let code = first ? Number(first[1]) : 451;
  if (code < 400 || code > 599) code = 451;
  const cls = String(code)[0]!;
  const texts = lines.map((l) => l.replace(/^\d{3}[ -]?/, '').trim());
  let dsn = `${cls}.0.0`;
  const m = /^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)/.exec(texts[0] ?? '');
  if (m) {
    // a 5xx never carries 4.x.x (RFC 3463 §2): the class follows the reply code
    dsn = `${cls}.${m[2]}.${m[3]}`;
  }
  const text = texts
    .map((t) => t.replace(/^[245]\.\d{1,3}\.\d{1,3}\s*/, ''))
    .join(' ')
    .replace(/[^\x20-\x7e]/g, '?')
    .slice(0, 400);
  return { code, dsn, text: text === '' ? 'upstream refused' : text };
}

/** The upstream queue id in a 250 reply (`queued as 4F3A2B1C`, `Ok: queued as ...`), if it names one. */
export function queueIdOf(reply: string): string | undefined {
  const m = /queued as ([A-Za-z0-9][A-Za-z0-9._-]{0,63})/i.exec(reply);
  return m ? m[1] : undefined;
}

/** XFORWARD values are xtext (RFC 3461 §4): `+`, `=`, controls and non-ASCII as +XX. */
export function xtext(value: string): string {
  return Buffer.from(value, 'utf8')
    .toString('latin1')
    .replace(/[^\x21-\x2a\x2c-\x3c\x3e-\x7e]/g, (c) => `+${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

export class UpstreamPool {
  readonly relay: string;
  readonly #opts: UpstreamOptions;
  readonly #idle: UpstreamConnection[] = [];
  readonly #busy = new Set<UpstreamConnection>();
  #closed = false;

  constructor(opts: UpstreamOptions) {
    this.#opts = opts;
    // Postfix's relay= notation: name[addr]:port (the relayhost is an IP literal, so name = addr)
    this.relay = `${opts.host}[${opts.host}]:${opts.port}`;
  }

  get stats(): { idle: number; busy: number } {
    return { idle: this.#idle.length, busy: this.#busy.size };
  }

  /** Starts one message; see ForwardJob. */
  start(req: ForwardRequest): ForwardJob {
    const body = new GatedBody();
    // Writes after an abort or a connection loss must not become an unhandled 'error'.
    body.on('error', () => undefined);
    let settle!: (r: ForwardResult) => void;
    let settled = false;
    const result = new Promise<ForwardResult>((res) => {
      settle = (r) => {
        if (settled) return;
        settled = true;
        res(r);
      };
    });
    let conn: UpstreamConnection | undefined;
    let abortedWhy: string | undefined;
    const fail = (code: number, dsn: string, text: string, detail: string) => settle({ ok: false, code, dsn, text, detail, relay: this.relay });
    const unavailable = (detail: string) => fail(UNAVAILABLE.code, UNAVAILABLE.dsn, UNAVAILABLE.text, detail);
    const drop = (c: UpstreamConnection | undefined) => {
      if (c === undefined) return;
      c.markFailed();
      this.#busy.delete(c);
      c.close();
    };

    const job: ForwardJob = {
      body,
      result,
      abort: (why: string) => {
        if (settled) return;
        abortedWhy = why;
        drop(conn);
        body.destroy();
        unavailable(`aborted: ${why}`);
      },
    };

    void (async () => {
      try {
        conn = await this.#acquire();
      } catch (err) {
        unavailable(`connect: ${errText(err)}`);
        body.resume(); // discard what the gateway writes until it learns the result
        return;
      }
      if (abortedWhy !== undefined) {
        drop(conn);
        return;
      }
      const c = conn;
      this.#busy.add(c);
      try {
        if (this.#opts.xforward && req.xforward !== undefined) await this.#xforward(c, req.xforward);
      } catch (err) {
        drop(c);
        unavailable(`XFORWARD: ${errText(err)}`);
        body.resume();
        return;
      }
      if (abortedWhy !== undefined) {
        drop(c);
        return;
      }
      body.gate = () => {
        // The upstream said 354: every RCPT reply is in. All-or-nothing (see the header).
        const refused = c.rejectedReplies();
        if (refused.length === 0) return true;
        const parsed = refused.map(parseReply);
        const pick = parsed.find((p) => p.code < 500) ?? parsed[0]!;
        setImmediate(() => drop(c));
        fail(pick.code, pick.dsn, pick.text, `upstream refused ${refused.length} of ${req.to.length} recipient(s): ${refused.map(oneLine).join(' | ')}`);
        body.resume();
        return false;
      };
      c.send({ from: req.from, to: [...req.to], use8BitMime: req.use8BitMime }, body, (err, info) => {
        if (settled) {
          if (c.usable && !err) this.#release(c);
          else drop(c);
          return;
        }
        if (err) {
          const e = err as Error & { response?: string; responseCode?: number; code?: string };
          drop(c);
          if (typeof e.response === 'string' && e.responseCode !== undefined && e.responseCode >= 400 && e.responseCode < 600 && e.code !== 'ECONNECTION' && e.code !== 'ETIMEDOUT') {
            const p = parseReply(e.response);
            fail(p.code, p.dsn, p.text, `upstream said: ${oneLine(e.response)}`);
          } else {
            unavailable(`${e.code ?? 'error'}: ${oneLine(e.message)}`);
          }
          return;
        }
        const reply = oneLine(info.response ?? '250');
        this.#release(c);
        settle({ ok: true, reply, queueId: queueIdOf(reply), relay: this.relay });
      });
    })();
    return job;
  }

  /** Closes idle connections now and busy ones as they finish. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const c of this.#idle.splice(0)) quit(c);
    const deadline = Date.now() + this.#opts.timeoutMs;
    for (let i = 0; i < 10_000 && this.#busy.size > 0 && Date.now() < deadline; i++) await new Promise((r) => setTimeout(r, 20));
    for (const c of this.#busy) c.close();
    this.#busy.clear();
  }

  async #acquire(): Promise<UpstreamConnection> {
    if (this.#closed) throw new Error('gateway stopping');
    while (this.#idle.length > 0) {
      const c = this.#idle.pop()!;
      if (!c.usable) {
        c.close();
        continue;
      }
      if (Date.now() - c.idleSince < IDLE_CHECK_MS) return c;
      try {
        await new Promise<void>((res, rej) => c.reset((err) => (err ? rej(err) : res())));
        return c;
      } catch {
        c.markFailed();
        c.close();
      }
    }
    return this.#open();
  }

  #open(): Promise<UpstreamConnection> {
    const o = this.#opts;
    const c = new UpstreamConnection({
      host: o.host,
      port: o.port,
      secure: o.tls === 'tls',
      requireTLS: o.tls === 'starttls',
      ignoreTLS: o.tls === 'none',
      name: o.ehloName,
      connectionTimeout: o.timeoutMs,
      greetingTimeout: o.timeoutMs,
      socketTimeout: o.timeoutMs,
      socketCloseTimeout: 1000,
      logger: false,
      ...(o.tlsOptions !== undefined ? { tls: o.tlsOptions } : {}),
    });
    // nodemailer emits 'error' for every failure; without a listener it would crash the process.
    c.on('error', (err: Error) => o.logger.debug({ event: 'upstream_error', relay: this.relay, err: errText(err) }, `upstream ${this.relay}: ${errText(err)}`));
    c.once('end', () => {
      const i = this.#idle.indexOf(c);
      if (i !== -1) this.#idle.splice(i, 1);
    });
    return new Promise((resolve, reject) => {
      // nodemailer reports a failed connect (refused, timeout, TLS) only as an 'error' event.
      const onConnectError = (err: Error) => {
        c.close();
        reject(err);
      };
      c.once('error', onConnectError);
      c.connect((err) => {
        c.off('error', onConnectError);
        if (err) {
          c.close();
          reject(err);
          return;
        }
        if (o.auth === undefined) {
          resolve(c);
          return;
        }
        c.login({ user: o.auth.username, pass: o.auth.password }, (lerr) => {
          if (lerr) {
            c.close();
            reject(new Error(`AUTH to the relayhost failed: ${oneLine(lerr.message)}`));
            return;
          }
          resolve(c);
        });
      });
    });
  }

  #release(c: UpstreamConnection): void {
    this.#busy.delete(c);
    if (this.#closed || !c.usable || this.#idle.length >= this.#opts.poolSize) {
      quit(c);
      return;
    }
    c.idleSince = Date.now();
    this.#idle.push(c);
  }

  async #xforward(c: UpstreamConnection, x: XForwardAttrs): Promise<void> {
    const offered = c.extension('XFORWARD');
    if (offered === undefined) return;
    const attrs: string[] = [];
    const add = (k: string, v: string) => {
      if (offered.includes(k)) attrs.push(`${k}=${v}`);
    };
    add('NAME', x.name !== undefined && x.name !== '' ? xtext(x.name) : '[UNAVAILABLE]');
    add('ADDR', xtext(x.addr.includes(':') ? `IPv6:${x.addr}` : x.addr));
    if (x.port !== undefined) add('PORT', String(x.port));
    add('PROTO', xtext(x.proto));
    add('HELO', x.helo !== undefined && x.helo !== '' ? xtext(x.helo) : '[UNAVAILABLE]');
    if (attrs.length === 0) return;
    const reply = await c.command(`XFORWARD ${attrs.join(' ')}`, this.#opts.timeoutMs);
    if (!reply.startsWith('2')) {
      // Informational only: the message still goes, with the gateway as its client, and the log says why.
      this.#opts.logger.warn({ event: 'xforward_refused', relay: this.relay, reply: oneLine(reply) }, `upstream ${this.relay} refused XFORWARD: ${oneLine(reply)}`);
    }
  }
}

function quit(c: UpstreamConnection): void {
  try {
    if (c.usable) c.quit();
    else c.close();
  } catch {
    c.close();
  }
}

function oneLine(s: string): string {
  return String(s).replace(/[^\x20-\x7e]+/g, ' ').trim().slice(0, 500);
}

function errText(err: unknown): string {
  return err instanceof Error ? oneLine(err.message) : oneLine(String(err));
}
