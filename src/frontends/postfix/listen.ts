// The stream listeners of the Postfix front ends (policy service, socketmap): `ip:port`, `[v6]:port` or
// `unix:/absolute/path`, as Postfix names them in `check_policy_service inet:...` / `unix:...`.
//
// - TCP: every accepted connection's peer goes through normalizeIp() and must be in `clients` (default
//   loopback only); anyone else is logged and disconnected before a byte is read.
// - unix: a stale socket file left by a crash is removed (nobody answers a connect on it); a path that is
//   in use, or is not a socket, is a start-up error. The socket gets `socket_mode` (default 0666: access is
//   controlled by the directory, e.g. Postfix's private/); it is removed again on close().
// - at most MAX_CONNECTIONS connections at once (Postfix opens one per smtpd process); more are closed.
// Security: both protocols are unauthenticated by design (Postfix offers nothing else), so who may connect
// is the only access control: validation refuses a non-loopback listen address unless `clients` names the
// networks allowed (README "Using relaygate with Postfix").

import net from 'node:net';
import { chmod, lstat, unlink } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import type { Logger } from '../../log/logger.ts';
import { CidrSet, listenError, normalizeIp } from '../../net/index.ts';
import { endpointText, parseEndpoint } from '../smtp/endpoints.ts';

export type ListenSpec =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string };

/** Connections one listener serves at once; beyond, new ones are closed at accept (and logged). */
export const MAX_CONNECTIONS = 1000;

const LOOPBACK = new CidrSet(['127.0.0.0/8', '::1/128']);

/** `127.0.0.1:10031`, `[::1]:10031`, `unix:/var/spool/postfix/private/relaygate`; a string is the problem. */
export function parseListen(text: string, opts: { allowPortZero?: boolean } = {}): ListenSpec | string {
  if (text.startsWith('unix:')) {
    const path = text.slice(5);
    if (!isAbsolute(path)) return `unix socket path must be absolute: "unix:/var/spool/postfix/private/relaygate"`;
    // sun_path holds 107 bytes plus the NUL on Linux
    if (Buffer.byteLength(path) > 107) return `unix socket path is longer than 107 bytes (the kernel's limit)`;
    if (/[\0\r\n]/.test(path)) return 'unix socket path contains a control character';
    return { kind: 'unix', path };
  }
  if (text.startsWith('inet:')) return `write "${text.slice(5)}" without "inet:" (that prefix is Postfix's side)`;
  const e = parseEndpoint(text, { allowPortZero: opts.allowPortZero === true });
  if (typeof e === 'string') return `${e} (or "unix:/path")`;
  return { kind: 'tcp', host: e.host, port: e.port };
}

export function listenText(s: ListenSpec): string {
  return s.kind === 'unix' ? `unix:${s.path}` : endpointText(s);
}

/** A TCP listen address outside loopback, for validation's "who may connect" rule. */
export function isRemoteListen(s: ListenSpec): boolean {
  // 0.0.0.0 and :: (every address) are not loopback either
  return s.kind === 'tcp' && !LOOPBACK.contains(s.host);
}

/** `0666`, `"0660"`, `0o660` → mode bits, or undefined when it is not a file mode. */
export function parseSocketMode(v: number | string): number | undefined {
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 && v <= 0o777 ? v : undefined;
  return /^0?[0-7]{3}$/.test(v) ? parseInt(v, 8) : undefined;
}

export interface StreamListener {
  /** where it listens, with the port the kernel chose for port 0 */
  readonly address: string;
  /** open connections */
  readonly connections: ReadonlySet<net.Socket>;
  /** stop accepting, close every connection (after up to graceMs for busy ones), remove a unix socket */
  close(graceMs?: number): Promise<void>;
}

export interface ListenOptions {
  /** `policy`, `socketmap`: names the listener in logs and errors */
  readonly what: string;
  readonly spec: ListenSpec;
  /** TCP peers allowed to connect */
  readonly clients: CidrSet;
  readonly socketMode: number;
  readonly logger: Logger;
  /** a new connection from an allowed peer; `peer` is `ip:port` or `unix` */
  onConnection(sock: net.Socket, peer: string): void;
  /** called when listening fails, before the error is thrown (to release what the caller set up) */
  onError?(): void;
  /** true while the connection is in the middle of a request (close() lets it finish) */
  busy?(sock: net.Socket): boolean;
}

/** Removes a stale unix socket; throws when the path is in use or is something else. */
async function clearStaleSocket(what: string, path: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) {
    throw listenError(what, `unix:${path}`, Object.assign(new Error(`${path} exists and is not a socket`), { code: 'EEXIST' }));
  }
  // A socket nobody accepts on (ECONNREFUSED) is what a crash leaves; anything else is not ours to remove.
  const probe = await new Promise<'stale' | 'in use' | NodeJS.ErrnoException>((resolve) => {
    const c = net.connect({ path });
    const done = (v: 'stale' | 'in use' | NodeJS.ErrnoException) => {
      c.destroy();
      resolve(v);
    };
    c.once('connect', () => done('in use'));
    c.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? 'stale' : err));
    c.setTimeout(1000, () => done('in use'));
  });
  if (probe === 'in use') throw listenError(what, `unix:${path}`, Object.assign(new Error('address already in use'), { code: 'EADDRINUSE' }));
  if (probe !== 'stale') throw listenError(what, `unix:${path}`, probe);
  await unlink(path);
}

export async function listenStream(o: ListenOptions): Promise<StreamListener> {
  const { what, spec, logger } = o;
  const connections = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: false, pauseOnConnect: false }, (sock) => {
    sock.on('error', (err) => logger.debug({ event: `${what}_socket_error`, err: err.message }, `${what}: connection error: ${err.message}`));
    let peer = 'unix';
    if (spec.kind === 'tcp') {
      const ip = normalizeIp(sock.remoteAddress ?? '');
      peer = `${ip ?? sock.remoteAddress ?? '?'}:${sock.remotePort ?? 0}`;
      if (ip === undefined || !o.clients.contains(ip)) {
        logger.warn({ event: `${what}_client_refused`, client: peer }, `${what}: refused connection from ${peer}: not in ${what}.clients`);
        sock.destroy();
        return;
      }
    }
    if (connections.size >= MAX_CONNECTIONS) {
      logger.warn({ event: `${what}_too_many_connections`, client: peer, limit: MAX_CONNECTIONS }, `${what}: refused connection from ${peer}: ${MAX_CONNECTIONS} connections open`);
      sock.destroy();
      return;
    }
    connections.add(sock);
    sock.once('close', () => connections.delete(sock));
    sock.setNoDelay(true); // one small reply per request: never wait for Nagle
    try {
      o.onConnection(sock, peer);
    } catch (err) {
      // a handler bug ends this connection, never the daemon
      logger.error({ event: `${what}_internal_error`, err }, `${what}: connection handler failed: ${(err as Error).message}`);
      sock.destroy();
    }
  });
  server.on('error', (err) => logger.error({ event: `${what}_server_error`, err: err.message }, `${what}: listener error: ${err.message}`));

  try {
    return await listenNow(o, server, connections);
  } catch (err) {
    o.onError?.();
    throw err;
  }
}

async function listenNow(o: ListenOptions, server: net.Server, connections: Set<net.Socket>): Promise<StreamListener> {
  const { what, spec } = o;
  if (spec.kind === 'unix') await clearStaleSocket(what, spec.path);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => reject(listenError(what, listenText(spec), err));
    server.once('error', onError);
    const ready = () => {
      server.off('error', onError);
      resolve();
    };
    if (spec.kind === 'unix') server.listen({ path: spec.path, exclusive: true }, ready);
    else server.listen({ host: spec.host, port: spec.port, exclusive: true, ipv6Only: spec.host.includes(':') }, ready);
  });
  let address: string;
  if (spec.kind === 'unix') {
    try {
      await chmod(spec.path, o.socketMode);
    } catch (err) {
      server.close();
      throw listenError(what, listenText(spec), err as NodeJS.ErrnoException);
    }
    address = listenText(spec);
  } else {
    const a = server.address() as net.AddressInfo;
    address = endpointText({ host: spec.host, port: a.port });
  }

  let closed: Promise<void> | undefined;
  return {
    address,
    connections,
    close(graceMs = 2000) {
      closed ??= (async () => {
        const serverClosed = new Promise<void>((r) => server.close(() => r()));
        // idle connections go now; busy ones get graceMs to send their reply
        const deadline = Date.now() + graceMs;
        for (let i = 0; i < 1000; i++) {
          for (const s of connections) if (!(o.busy?.(s) ?? false)) s.destroy();
          if (connections.size === 0 || Date.now() >= deadline) break;
          await new Promise((r) => setTimeout(r, 20));
        }
        for (const s of connections) s.destroy();
        await serverClosed;
        if (spec.kind === 'unix') await unlink(spec.path).catch(() => undefined);
      })();
      return closed;
    },
  };
}

/** What the timeout sweep needs from a connection. */
export interface TimedConnection {
  /** Date.now() of the last bytes received or reply sent */
  last: number;
  /** a request is being answered: never timed out meanwhile */
  busy: boolean;
  /** a request has begun but is not complete */
  midRequest(): boolean;
  onTimeout(kind: 'request' | 'idle'): void;
}

/**
 * One interval per listener instead of a socket timer re-armed twice per request (measurable at tens of
 * thousands of requests per second): a connection is timed out within a quarter of its limit (at most 1 s) late.
 */
export function timeoutSweep(requestMs: number, idleMs: number): { add(c: TimedConnection): void; delete(c: TimedConnection): void; stop(): void } {
  const conns = new Set<TimedConnection>();
  const timer = setInterval(() => {
    const now = Date.now();
    for (const c of conns) {
      if (c.busy) continue;
      const mid = c.midRequest();
      if (now - c.last >= (mid ? requestMs : idleMs)) c.onTimeout(mid ? 'request' : 'idle');
    }
  }, Math.max(25, Math.min(1000, Math.floor(requestMs / 4))));
  timer.unref();
  return {
    add: (c) => void conns.add(c),
    delete: (c) => void conns.delete(c),
    stop: () => clearInterval(timer),
  };
}

/** At most this many requests may wait on one connection for their replies (Postfix sends one at a time). */
export const MAX_PIPELINED = 64;

export interface RequestLoopOptions<Req> {
  readonly sock: net.Socket;
  readonly sweep: { add(c: TimedConnection): void; delete(c: TimedConnection): void };
  readonly conns: WeakMap<net.Socket, TimedConnection>;
  /** the protocol's framing: `midRequest` while a request has begun but is not complete */
  readonly parser: { readonly midRequest: boolean };
  /** feeds bytes to the parser: the complete requests, or the reason the input is malformed */
  feed(chunk: Buffer): { requests: readonly Req[]; error?: string | undefined };
  /** the framed reply to one request (at once when it needs no waiting); a throw is answered by onInternalError */
  answer(req: Req): string | Promise<string>;
  onInternalError(err: unknown): string;
  /** after each answer (counters, debug lines) */
  answered?(req: Req, reply: string): void;
  /** logs and counts a malformed request; the loop then closes the connection */
  onMalformed(why: string): void;
  readonly requestTimeoutText: string;
  readonly eofText: string;
  onIdleClose?(): void;
  onClose?(): void;
}

/**
 * One connection of a request/reply protocol (policy delegation, socketmap): requests answered in order,
 * one at a time, replies written with back-pressure; malformed input, a request left unfinished past the
 * request timeout, a connection closed mid-request or more than MAX_PIPELINED unanswered requests close the
 * connection; an idle connection is closed quietly. Timeouts come from the listener's timeoutSweep.
 */
export function serveRequests<Req>(o: RequestLoopOptions<Req>): void {
  const { sock } = o;
  const queue: Req[] = [];
  let dead = false;
  const malformed = (why: string) => {
    if (dead) return;
    dead = true;
    o.onMalformed(why);
    sock.destroy();
  };
  const tc: TimedConnection = {
    last: Date.now(),
    busy: false,
    midRequest: () => o.parser.midRequest || queue.length > 0,
    onTimeout(kind) {
      if (kind === 'request') return malformed(o.requestTimeoutText);
      o.onIdleClose?.();
      dead = true;
      sock.destroy();
    },
  };
  o.conns.set(sock, tc);
  o.sweep.add(tc);
  sock.on('end', () => {
    if (o.parser.midRequest) malformed(o.eofText);
  });
  sock.on('close', () => {
    dead = true;
    o.sweep.delete(tc);
    o.onClose?.();
  });
  const pump = async () => {
    if (tc.busy) return;
    tc.busy = true;
    try {
      while (queue.length > 0 && !dead) {
        const req = queue.shift()!;
        let reply: string;
        try {
          const r = o.answer(req);
          reply = typeof r === 'string' ? r : await r;
        } catch (err) {
          reply = o.onInternalError(err);
        }
        o.answered?.(req, reply);
        if (dead) break;
        if (!sock.write(reply)) {
          sock.pause();
          sock.once('drain', () => sock.resume());
        }
      }
    } finally {
      tc.busy = false;
      tc.last = Date.now();
    }
  };
  sock.on('data', (chunk: Buffer) => {
    if (dead) return;
    tc.last = Date.now();
    const r = o.feed(chunk);
    for (const q of r.requests) queue.push(q);
    if (r.error !== undefined) return malformed(r.error);
    if (queue.length > MAX_PIPELINED) return malformed(`more than ${MAX_PIPELINED} requests sent without reading the replies`);
    if (queue.length > 0) void pump();
  });
}
