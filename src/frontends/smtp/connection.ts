// smtp-server, extended at the few points that its options do not cover. Everything else is the
// library's own behaviour; its handlers (onConnect, onAuth, onMailFrom, onRcptTo, onData, onClose) are
// set by gateway.ts.
//
// The extension is a subclass pair: GatewayServer overrides SMTPServer.connect() (five lines in
// smtp-server 3.21: construct the connection, register it, init it) to construct a GatewayConnection, which
// overrides these methods of smtp-server's SMTPConnection (all declared in its published .d.ts):
//
//   init()          the greeting delay. smtp-server holds the 220 for a hard-coded 100 ms (an early-talker
//                   check in SMTPConnection.init); this is the same method with the delay taken from
//                   `smtp.greeting_delay` (0 = greet at once: submission clients authenticate, and the fixed
//                   100 ms caps one-message-per-connection load at ~190 msgs/s for 20 clients).
//   handler_EHLO()  the EHLO capability list passes through hooks.ehloFeatures(): it removes AUTH where it
//                   must not be offered (tls_auth_only before TLS, no backend) and adds Postfix's
//                   `broken_sasl_auth_clients` line `AUTH=PLAIN LOGIN` for Outlook Express 4 / Exchange 5.
//                   smtp-server builds the list inside handler_EHLO and sends it with one send(250, lines);
//                   the override marks that one call and rewrites its lines, nothing else changes.
//   handler_AUTH()  hooks.authGate() runs before any SASL exchange starts: throttle lockout (421 4.7.0 before
//                   the client sends a password), tls_auth_only (538 5.7.11), AUTH without a backend or
//                   inside a mail transaction (503 5.5.1).
//   send()          a reply text that already starts with an RFC 3463 code (`5.7.1 <x>: Relay access
//                   denied`) is sent without smtp-server's automatic one. smtp-server derives the enhanced
//                   code from the reply code alone (554 → 5.6.0), so the engine's exact DSN is passed in the
//                   text and the automatic one suppressed. It also counts final replies per command...
//   _onCommand()    ...whose names it notes (not AUTH continuation lines), for the Postfix-style
//                   `disconnect from ... ehlo=1 mail=1 rcpt=0/1 commands=2/3` line.
//
// package.json pins smtp-server to the exact version these were read from (3.21.6), and
// test/frontends/smtp checks each of them (greeting time, EHLO lines, reply codes, disconnect line), so an
// upgrade that moves them fails a test instead of silently changing behaviour.
// Security: nothing here grants anything. The hooks only remove capabilities, refuse commands or delay the
// greeting; relay decisions stay in the engine and AUTH results come from the backend.

import type net from 'node:net';
import type tls from 'node:tls';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { SMTPConnection, type SMTPConnectionOptions } from 'smtp-server/lib/smtp-connection.js';

/** A reply a hook answers instead of going on. */
export interface HookReply {
  readonly code: number;
  /** text, normally starting with the enhanced status code */
  readonly text: string;
}

export interface ConnectionHooks {
  /** ms to hold the 220 greeting (smtp-server's fixed 100 ms otherwise) */
  readonly greetingDelayMs: number;
  /** rewrites the EHLO capability lines (the greeting line itself is not passed) */
  ehloFeatures(conn: GatewayConnection, features: readonly string[]): string[];
  /** before an AUTH exchange starts: a reply to refuse it, or undefined to let it run */
  authGate(conn: GatewayConnection): HookReply | undefined;
  /** a connection was constructed (before init: no session data yet) */
  created?(conn: GatewayConnection): void;
}

/** A reply text that carries its own enhanced status code, e.g. `5.7.1 ...`. */
const OWN_DSN = /^[245]\.\d{1,3}\.\d{1,3}(?: |$)/;

/** Postfix's command names for the disconnect line; anything else counts as `unknown`. */
const COUNTED = new Set(['EHLO', 'HELO', 'STARTTLS', 'AUTH', 'MAIL', 'RCPT', 'DATA', 'BDAT', 'RSET', 'NOOP', 'VRFY', 'ETRN', 'QUIT', 'HELP']);

export interface CommandCount {
  ok: number;
  total: number;
}

export class GatewayConnection extends SMTPConnection {
  readonly hooks: ConnectionHooks;
  /** per command name (lower case), in first-use order: replies < 400 and all replies */
  readonly commandStats = new Map<string, CommandCount>();
  #current: CommandCount | undefined;
  #ehloPending = false;

  constructor(server: SMTPServer, socket: net.Socket | tls.TLSSocket, options: SMTPConnectionOptions | null | undefined, hooks: ConnectionHooks) {
    super(server, socket, options);
    this.hooks = hooks;
  }

  /** smtp-server 3.21 SMTPConnection.init() with the configurable greeting delay (see the header). */
  override init(): void {
    this._setListeners(() => {
      const max = this._server.options.maxClients;
      if (max && this._server.connections.size > max) {
        this.send(421, `4.7.0 ${this.name} Error: too many connected clients, try again later`, false);
        return;
      }
      const delay = this.hooks.greetingDelayMs;
      if (delay > 0) {
        // unref'd like smtp-server's own timer: a pending greeting does not keep a stopping process alive
        setTimeout(() => this.connectionReady(), delay).unref();
      } else {
        // Asynchronous like the original. NOT unref'd: an unref'd immediate does not stop libuv from
        // sleeping in poll, so the greeting would wait for the next unrelated timer or I/O event.
        setImmediate(() => this.connectionReady());
      }
    });
  }

  override handler_EHLO(command: Buffer, callback: () => void): void {
    this.#ehloPending = true;
    try {
      super.handler_EHLO(command, callback);
    } finally {
      this.#ehloPending = false;
    }
  }

  override handler_AUTH(command: Buffer, callback: () => void): void {
    const refusal = this.hooks.authGate(this);
    if (refusal !== undefined) {
      this.send(refusal.code, refusal.text); // a 421 also closes the connection (smtp-server send())
      callback();
      return;
    }
    super.handler_AUTH(command, callback);
  }

  override _onCommand(command: Buffer, callback?: () => void): void {
    // AUTH continuation lines (_nextHandler) and lines before the greeting are not commands of their own.
    if (this._ready && !this._upgrading && !this._nextHandler) {
      const first = (command ?? '').toString().split(' ', 1)[0]!.toUpperCase();
      const name = COUNTED.has(first) ? first.toLowerCase() : 'unknown';
      let c = this.commandStats.get(name);
      if (c === undefined) this.commandStats.set(name, (c = { ok: 0, total: 0 }));
      c.total++;
      this.#current = c;
    }
    super._onCommand(command, callback);
  }

  override send(code: number, data?: string | string[] | null, context?: string | false): void {
    let lines = data;
    let ctx = context;
    if (typeof lines === 'string' && OWN_DSN.test(lines)) ctx = false;
    if (this.#ehloPending && code === 250 && Array.isArray(lines) && lines.length > 0) {
      lines = [lines[0]!, ...this.hooks.ehloFeatures(this, lines.slice(1))];
    }
    // 334 (AUTH challenge) and 354 (DATA go-ahead) are intermediate; every other reply ends its command.
    if (this.#current !== undefined && code !== 334 && code !== 354) {
      if (code < 400) this.#current.ok++;
      this.#current = undefined;
    }
    super.send(code, lines, ctx);
  }

  /** Postfix's `ehlo=1 mail=1 rcpt=0/1 data=0/1 quit=1 commands=3/5`. */
  statsText(): string {
    let ok = 0;
    let total = 0;
    const parts: string[] = [];
    for (const [name, c] of this.commandStats) {
      ok += c.ok;
      total += c.total;
      parts.push(c.ok === c.total ? `${name}=${c.total}` : `${name}=${c.ok}/${c.total}`);
    }
    parts.push(ok === total ? `commands=${total}` : `commands=${ok}/${total}`);
    return parts.join(' ');
  }
}

export class GatewayServer extends SMTPServer {
  readonly hooks: ConnectionHooks;

  constructor(options: SMTPServerOptions, hooks: ConnectionHooks) {
    super(options);
    this.hooks = hooks;
  }

  /** smtp-server 3.21 SMTPServer.connect(), constructing a GatewayConnection. */
  override connect(socket: net.Socket | tls.TLSSocket, socketOptions?: SMTPConnectionOptions | null): void {
    const connection = new GatewayConnection(this, socket, socketOptions, this.hooks);
    this.connections.add(connection);
    connection.on('error', (err: Error) => this._onError(err));
    connection.on('connect', (data) => this._onClientConnect(data));
    this.hooks.created?.(connection);
    connection.init();
  }
}
