// Minimal POP3 / IMAP login clients on raw node:net sockets, for tests against real servers on loopback.
//
// Why raw sockets: usernames in hostile tests contain anything (`>`, `"`, `,`, `\r`, `\n`, 300+ bytes), which
// ordinary clients refuse or re-encode. `localAddress` picks the source address, so each 127.x.y.z (or ::1)
// acts as a distinct "client" in the server's log (`rip=`).
//
// Every session first checks the server greeting (`+OK` for POP3, `* OK` for IMAP, plus an optional
// `expectGreeting` pattern) and sends nothing if it does not match. Every wait is bounded by `timeoutMs`.
//
// The same with curl (no hostile bytes possible there, and curl's own quoting applies):
//   curl -s pop3://127.0.0.1:PORT/ -u alice:secret --interface 127.0.0.7            # POP3 (AUTH PLAIN when offered, else USER/PASS), LIST
//   curl -s 'pop3://127.0.0.1:PORT/' -u alice:secret --login-options AUTH=LOGIN --interface 127.0.0.7    # SASL LOGIN
//   curl -s 'imap://127.0.0.1:PORT/' -u alice:secret --interface 127.0.0.7            # IMAP AUTHENTICATE PLAIN (SASL-IR)
//   curl -s 'imap://127.0.0.1:PORT/' -u alice:secret --login-options AUTH=LOGIN --interface 127.0.0.7    # SASL LOGIN
//   (curl 7.88 of Debian 12 cannot force the IMAP LOGIN command: AUTH=+LOGIN is refused; use imapLogin() for it)
//   curl -s --ssl-reqd -k 'pop3://127.0.0.1:PORT/' -u alice:secret --interface 127.0.0.7   # STARTTLS (ssl: true)
//   curl -s -g 'pop3://[::1]:PORT/' -u bob:secret --interface ::1                        # IPv6 (-g: no URL globbing of [ ])
// curl has no greeting check of its own; use probeGreeting() first (or `curl -v` and read the `< +OK` line).
import net from 'node:net';

export type Dir = 'C' | 'S';
export interface TranscriptLine {
  dir: Dir;
  line: string;
}

export interface SessionResult {
  /** true when the server accepted the credentials */
  ok: boolean;
  greeting: string;
  /** the server's final answer to the login command (`+OK ...`, `-ERR ...`, `a1 OK ...`, `a1 NO ...`) */
  reply: string;
  /** source address and port the server saw */
  localAddress: string;
  localPort: number;
  transcript: TranscriptLine[];
}

export interface CommonOpts {
  host: string;
  port: number;
  /** source address (127.x.y.z or ::1) */
  localAddress?: string;
  timeoutMs?: number;
  /** extra check on the greeting, e.g. /Dovecot/ */
  expectGreeting?: RegExp;
}

export interface LoginOpts extends CommonOpts {
  user: string;
  pass: string;
  /** send QUIT / LOGOUT after the login attempt (default true); false just closes the socket */
  logout?: boolean;
}

/** A line-oriented reader on a socket (lines split on LF, CRLF stripped, bytes kept as latin1-safe UTF-8). */
class Conn {
  private buf = Buffer.alloc(0);
  private waiters: Array<{ resolve: (l: string) => void; reject: (e: Error) => void }> = [];
  private closedErr: Error | null = null;
  readonly transcript: TranscriptLine[] = [];
  readonly localAddress: string;
  readonly localPort: number;

  private constructor(
    readonly sock: net.Socket,
    private readonly timeoutMs: number,
  ) {
    this.localAddress = sock.localAddress ?? '';
    this.localPort = sock.localPort ?? 0;
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.drain();
    });
    const fail = (e: Error): void => {
      this.closedErr = e;
      for (const w of this.waiters.splice(0)) w.reject(e);
    };
    sock.on('error', (e) => fail(e));
    sock.on('close', () => fail(new Error('connection closed by server')));
  }

  static open(o: CommonOpts): Promise<Conn> {
    const timeoutMs = o.timeoutMs ?? 15_000;
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: o.host, port: o.port, ...(o.localAddress ? { localAddress: o.localAddress } : {}) });
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error(`connect to ${o.host}:${o.port} timed out`));
      }, timeoutMs);
      sock.once('connect', () => {
        clearTimeout(timer);
        resolve(new Conn(sock, timeoutMs));
      });
      sock.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  }

  private drain(): void {
    for (;;) {
      const w = this.waiters[0];
      if (!w) return;
      const nl = this.buf.indexOf(0x0a);
      if (nl < 0) return;
      let line = this.buf.subarray(0, nl).toString('utf8');
      this.buf = this.buf.subarray(nl + 1);
      if (line.endsWith('\r')) line = line.slice(0, -1);
      this.waiters.shift();
      this.transcript.push({ dir: 'S', line });
      w.resolve(line);
    }
  }

  readLine(): Promise<string> {
    if (this.closedErr && this.buf.indexOf(0x0a) < 0) return Promise.reject(this.closedErr);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiters.findIndex((w) => w.resolve === done);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`no reply within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      const done = (l: string): void => {
        clearTimeout(timer);
        resolve(l);
      };
      this.waiters.push({
        resolve: done,
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.drain();
    });
  }

  /** Write raw bytes; `shown` is what goes into the transcript (passwords are masked by callers). */
  write(data: string | Buffer, shown?: string): void {
    this.transcript.push({ dir: 'C', line: shown ?? (typeof data === 'string' ? data : data.toString('utf8')).replace(/\r\n$/, '') });
    this.sock.write(data);
  }

  /** Read lines until one matches `re` (bounded by count). */
  async readUntil(re: RegExp, maxLines = 50): Promise<string> {
    for (let i = 0; i < maxLines; i++) {
      const l = await this.readLine();
      if (re.test(l)) return l;
    }
    throw new Error(`no line matching ${re} in ${maxLines} lines`);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.sock.destroyed) return resolve();
      const timer = setTimeout(() => {
        this.sock.destroy();
        resolve();
      }, 2_000);
      this.sock.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.sock.end();
    });
  }

  result(ok: boolean, greeting: string, reply: string): SessionResult {
    return { ok, greeting, reply, localAddress: this.localAddress, localPort: this.localPort, transcript: this.transcript };
  }
}

async function greet(c: Conn, proto: 'pop3' | 'imap', o: CommonOpts): Promise<string> {
  const g = await c.readLine();
  const shape = proto === 'pop3' ? /^\+OK\b/ : /^\* (OK|PREAUTH)\b/;
  if (!shape.test(g) || (o.expectGreeting && !o.expectGreeting.test(g))) {
    c.sock.destroy();
    throw new Error(`unexpected ${proto} greeting from ${o.host}:${o.port}: ${JSON.stringify(g)}`);
  }
  return g;
}

const plainB64 = (user: string, pass: string, authzid = ''): string => Buffer.from(`${authzid}\0${user}\0${pass}`, 'utf8').toString('base64');

/** Connect, check the greeting, close without any command (a "no auth attempts" disconnect in the server log). */
export async function probeGreeting(o: CommonOpts & { protocol: 'pop3' | 'imap' }): Promise<string> {
  const c = await Conn.open(o);
  try {
    return await greet(c, o.protocol, o);
  } finally {
    c.sock.destroy();
  }
}

export type Pop3Method =
  /** USER name / PASS secret */
  | 'user'
  /** AUTH PLAIN <initial response> (SASL-IR) */
  | 'auth-plain'
  /** AUTH PLAIN, wait for `+`, then the response */
  | 'auth-plain-continue';

/**
 * POP3 login. `abortAfterUser`: send USER, then drop the connection without PASS.
 * `user` is sent byte for byte (a `\r` inside survives; a `\n` would end the command line — use 'auth-plain' for that).
 */
export async function pop3Login(o: LoginOpts & { method?: Pop3Method; abortAfterUser?: boolean; authzid?: string }): Promise<SessionResult> {
  const c = await Conn.open(o);
  let greeting = '';
  try {
    greeting = await greet(c, 'pop3', o);
    const method = o.method ?? 'user';
    let reply: string;
    if (method === 'user') {
      c.write(`USER ${o.user}\r\n`);
      reply = await c.readLine();
      if (o.abortAfterUser) {
        c.sock.destroy();
        return c.result(false, greeting, reply);
      }
      if (reply.startsWith('+OK')) {
        c.write(`PASS ${o.pass}\r\n`, 'PASS ***');
        reply = await c.readLine();
      }
    } else if (method === 'auth-plain') {
      c.write(`AUTH PLAIN ${plainB64(o.user, o.pass, o.authzid)}\r\n`, 'AUTH PLAIN ***');
      reply = await c.readLine();
    } else {
      c.write('AUTH PLAIN\r\n');
      reply = await c.readLine();
      if (reply.startsWith('+')) {
        c.write(`${plainB64(o.user, o.pass, o.authzid)}\r\n`, '***');
        reply = await c.readLine();
      }
    }
    const ok = reply.startsWith('+OK');
    if (o.logout ?? true) {
      c.write('QUIT\r\n');
      await c.readLine().catch(() => '');
    }
    await c.close();
    return c.result(ok, greeting, reply);
  } catch (e) {
    c.sock.destroy();
    throw e;
  }
}

/** IMAP astring: quoted when safe, otherwise a synchronizing literal (returned as parts to send in turn). */
function imapArg(s: string, forceLiteral: boolean): { inline: string } | { literal: Buffer } {
  const safe = /^[\x20-\x7e]*$/.test(s);
  if (safe && !forceLiteral) return { inline: `"${s.replace(/(["\\])/g, '\\$1')}"` };
  return { literal: Buffer.from(s, 'utf8') };
}

export type ImapMethod =
  /** a1 LOGIN user pass (quoted strings, or literals for bytes that cannot be quoted) */
  | 'login'
  /** a1 AUTHENTICATE PLAIN <initial response> (SASL-IR) */
  | 'authenticate-plain';

export async function imapLogin(o: LoginOpts & { method?: ImapMethod; literal?: boolean; authzid?: string }): Promise<SessionResult> {
  const c = await Conn.open(o);
  let greeting = '';
  try {
    greeting = await greet(c, 'imap', o);
    const method = o.method ?? 'login';
    let reply: string;
    if (method === 'login') {
      const u = imapArg(o.user, o.literal ?? false);
      const p = imapArg(o.pass, o.literal ?? false);
      // Send "a1 LOGIN <u> <p>", honouring synchronizing literals (wait for "+" before the literal bytes).
      let pending = 'a1 LOGIN ';
      let shownPending = 'a1 LOGIN ';
      let rejected: string | null = null;
      for (const [i, part] of [u, p].entries()) {
        const sep = i === 0 ? ' ' : '';
        const shown = i === 1 ? '***' : undefined;
        if ('inline' in part) {
          pending += part.inline + sep;
          shownPending += (shown ?? part.inline) + sep;
        } else {
          c.write(`${pending}{${part.literal.length}}\r\n`, `${shownPending}{${part.literal.length}}`);
          const cont = await c.readLine();
          if (!cont.startsWith('+')) {
            rejected = cont;
            break;
          }
          c.write(part.literal, shown ?? JSON.stringify(part.literal.toString('utf8')));
          pending = sep;
          shownPending = sep;
        }
      }
      if (rejected !== null) {
        reply = rejected;
      } else {
        c.write(`${pending}\r\n`, shownPending.trim() === '' ? '(CRLF)' : shownPending);
        reply = await c.readUntil(/^a1 /);
      }
    } else {
      c.write(`a1 AUTHENTICATE PLAIN ${plainB64(o.user, o.pass, o.authzid)}\r\n`, 'a1 AUTHENTICATE PLAIN ***');
      reply = await c.readUntil(/^a1 /);
    }
    const ok = /^a1 OK\b/.test(reply);
    if (o.logout ?? true) {
      c.write('a2 LOGOUT\r\n');
      await c.readUntil(/^a2 /).catch(() => '');
    }
    await c.close();
    return c.result(ok, greeting, reply);
  } catch (e) {
    c.sock.destroy();
    throw e;
  }
}

/**
 * A session without any authentication attempt: greeting, then either just close ('close') or QUIT / LOGOUT ('quit').
 * Dovecot logs these as `Disconnected: ... (no auth attempts in N secs)` / `Aborted login by logging out`.
 */
export async function noAuthSession(o: CommonOpts & { protocol: 'pop3' | 'imap'; mode: 'close' | 'quit' }): Promise<SessionResult> {
  const c = await Conn.open(o);
  try {
    const greeting = await greet(c, o.protocol, o);
    let reply = '';
    if (o.mode === 'quit') {
      if (o.protocol === 'pop3') {
        c.write('QUIT\r\n');
        reply = await c.readLine().catch(() => '');
      } else {
        c.write('a1 LOGOUT\r\n');
        reply = await c.readUntil(/^a1 /).catch(() => '');
      }
      await c.close();
    } else {
      c.sock.destroy();
    }
    return c.result(false, greeting, reply);
  } catch (e) {
    c.sock.destroy();
    throw e;
  }
}
