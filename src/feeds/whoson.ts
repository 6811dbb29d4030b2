// The whoson server: POP/IMAP servers tell it who logged in from where (LOGIN / LOGOUT), and an MTA such as
// Exim asks about a client address (QUERY). Grants live in the access map like every other source's.
//
// Protocol (shared/reference/protocols.md §8; the original whoson and gowhoson): text over TCP and UDP,
// port 9876 by convention. A request is one line ending CRLF, then an empty line; on UDP one request per
// datagram. Commands (case-insensitive): `LOGIN <ip> <userdata...>`, `LOGOUT <ip>`, `QUERY <ip>`, `QUIT`.
// A reply is one line, then an empty line: `+...` yes/done (QUERY: `+<userdata>`), `-...` not logged in,
// `*...` error. Replies used here (gowhoson's wording): `+LOGIN OK`, `+LOGOUT record deleted`,
// `+LOGOUT no such record, nothing done`, `+<user>`, `-Not logged in`, `+QUIT OK`, `*<reason>`.
// Lines ending in a bare LF are accepted too (gowhoson reads with Go's textproto, which does).
// Mapping onto the access map: LOGIN records a grant (source `whoson`, user = userdata); LOGOUT deletes the
// grant of that address; QUERY looks it up (expired = absent). A store failure answers `*` (temporary
// error), never `+`.
// Access: LOGIN and LOGOUT only from `allow_login`, QUERY only from `allow_query` (each: loopback only when
// unset). The original had allow/deny lists too; there is no authentication in the protocol.
// Bounds: request lines of at most 1024 bytes (a longer one: `*line too long` and the connection closes),
// userdata of at most 256 characters without control characters, TCP connections (total, per caller),
// pipelined requests per connection, idle timeout, and a per-caller rate limit (refused with `*`, logged
// once a second). Every accepted and refused request is logged (whoson_login, whoson_logout,
// whoson_query, whoson_refused, whoson_bad_request).
// Security: userdata is untrusted text that ends up in the map and in logs: bounded and checked here, and
// only ever used as a user name for sender-login checks and logs.

import { metrics } from '../metrics/metrics.ts';
import { createSocket, type Socket as UdpSocket, type RemoteInfo } from 'node:dgram';
import { createServer, type Server, type Socket, type AddressInfo } from 'node:net';
import type { AccessMap } from '../store/index.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log/logger.ts';
import { normalizeIp, type CidrSet } from '../net/index.ts';
import { listenError } from '../net/listen-error.ts';
import { endpointText, type Endpoint } from '../frontends/smtp/endpoints.ts';
import { LoginBatcher } from './batcher.ts';
import { RateLimiter } from './rate-limit.ts';

export const MAX_LINE = 1024;
export const MAX_USERDATA = 256;
const MAX_DATAGRAM = 2048;
const MAX_TCP_CONNECTIONS = 256;
const MAX_TCP_PER_CALLER = 32;
const MAX_PIPELINED = 16;

export interface WhosonServerOptions {
  readonly listen: readonly Endpoint[];
  readonly allowLogin: CidrSet;
  readonly allowQuery: CidrSet;
  readonly rateLimit: number;
  readonly map: AccessMap;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly idleTimeoutMs?: number;
}

export interface WhosonListener {
  readonly tcp: AddressInfo;
  readonly udp: AddressInfo;
}

export interface WhosonServer {
  readonly listeners: readonly WhosonListener[];
  stop(): Promise<void>;
}

type Transport = 'udp' | 'tcp';

interface Reply {
  readonly line: string;
  /** close the connection after the reply (QUIT, an unusable stream) */
  readonly close?: boolean;
  /** refused by the rate limit: over UDP no reply at all (a flood gets no answers to reflect) */
  readonly limited?: boolean;
}

// Printable ASCII and any non-ASCII character; no controls (CR, LF, NUL, ESC...) and no DEL.
const CONTROL = /[\u0000-\u001f\u007f]/;

class WhosonService {
  readonly batcher: LoginBatcher;
  readonly limiter: RateLimiter;

  /** May this caller use any command? (UDP replies to strangers are never larger than their datagram.) */
  known(caller: string): boolean {
    return this.o.allowLogin.contains(caller) || this.o.allowQuery.contains(caller);
  }

  constructor(private readonly o: WhosonServerOptions) {
    this.batcher = new LoginBatcher(o.map);
    this.limiter = new RateLimiter({ rate: o.rateLimit, clock: o.clock });
  }

  private bad(caller: string, transport: Transport, reason: string, reply: string, close = false): Reply {
    metrics.feedRequests.inc({ feed: 'whoson', result: 'refused' });
    this.o.logger.warn({ event: 'whoson_bad_request', caller_ip: caller, transport, reason }, `whoson: bad request from ${caller}: ${reason}`);
    return { line: `*${reply}`, close };
  }

  private refused(caller: string, transport: Transport, command: string, client: string | undefined, reason: string): Reply {
    metrics.feedRequests.inc({ feed: 'whoson', result: 'refused' });
    this.o.logger.warn({ event: 'whoson_refused', caller_ip: caller, transport, command, client_ip: client, reason }, `whoson: ${command} from ${caller} refused: ${reason}`);
    return { line: '*Permission denied' };
  }

  /** One request line (without its line end) in, one reply line out. Never throws. */
  async handle(line: string, caller: string, transport: Transport): Promise<Reply> {
    const d = this.limiter.take(caller);
    if (!d.ok) {
      if (d.report > 0) {
        metrics.feedRequests.inc({ feed: 'whoson', result: 'refused' });
        this.o.logger.warn({ event: 'whoson_rate_limited', caller_ip: caller, transport, refused: d.report, limit_per_s: this.o.rateLimit }, `whoson: ${caller} over ${this.o.rateLimit} requests/s: refused ${d.report} request(s)`);
      }
      return { line: '*Too many requests, try again later', limited: true };
    }
    if (CONTROL.test(line)) return this.bad(caller, transport, 'control character in the request', 'Bad request: control character');
    const words = line.trim().split(/[ \t]+/);
    const command = (words[0] ?? '').toUpperCase();
    if (command === 'QUIT') {
      this.o.logger.debug({ event: 'whoson_quit', caller_ip: caller, transport }, `whoson: QUIT from ${caller}`);
      return { line: '+QUIT OK', close: true };
    }
    if (command !== 'LOGIN' && command !== 'LOGOUT' && command !== 'QUERY') {
      return this.bad(caller, transport, `unknown command ${JSON.stringify(command.slice(0, 32))}`, 'Unknown command (LOGIN, LOGOUT, QUERY, QUIT)');
    }
    const allowed = command === 'QUERY' ? this.o.allowQuery : this.o.allowLogin;
    const rawIp = words[1];
    if (!allowed.contains(caller)) return this.refused(caller, transport, command, rawIp?.slice(0, 64), command === 'QUERY' ? 'caller not in whoson.allow_query' : 'caller not in whoson.allow_login');
    const ip = rawIp === undefined ? undefined : normalizeIp(rawIp);
    if (ip === undefined) return this.bad(caller, transport, `${command} without a valid IP address`, `Bad request: ${command} needs an IP address`);
    if (command !== 'LOGIN' && words.length > 2) return this.bad(caller, transport, `${command} takes one argument`, `Bad request: ${command} takes only an IP address`);
    try {
      if (command === 'LOGIN') return await this.login(caller, transport, ip, words.slice(2).join(' '));
      if (command === 'LOGOUT') return await this.logout(caller, transport, ip);
      return await this.query(caller, transport, ip);
    } catch (err) {
      metrics.feedRequests.inc({ feed: 'whoson', result: 'error' });
      this.o.logger.error({ event: 'whoson_store_error', caller_ip: caller, transport, command, client_ip: ip, err }, `whoson: ${command} ${ip} from ${caller} failed: access map error: ${(err as Error).message}`);
      return { line: '*Temporary failure: access map unavailable' };
    }
  }

  private async login(caller: string, transport: Transport, ip: string, userdata: string): Promise<Reply> {
    if (userdata.length > MAX_USERDATA) return this.bad(caller, transport, `userdata of ${userdata.length} characters`, `Bad request: userdata longer than ${MAX_USERDATA} characters`);
    const result = await this.batcher.submit({ ip, user: userdata === '' ? undefined : userdata, source: 'whoson' });
    const base = { event: 'whoson_login', caller_ip: caller, transport, client_ip: ip, user: userdata === '' ? undefined : userdata };
    if (result === 'overloaded') {
      metrics.feedRequests.inc({ feed: 'whoson', result: 'error' });
      this.o.logger.warn({ ...base, event: 'whoson_store_error', reason: 'overloaded' }, `whoson: LOGIN ${ip} from ${caller}: too many writes waiting`);
      return { line: '*Temporary failure: too busy, try again' };
    }
    if (result.recorded) {
      metrics.feedRequests.inc({ feed: 'whoson', result: 'accepted' });
      this.o.logger.info({ ...base, granted: true, expires: result.grant.expires }, `whoson: ${ip} may relay until ${new Date(result.grant.expires).toISOString()} (LOGIN from ${caller})`);
      return { line: '+LOGIN OK' };
    }
    if (result.reason === 'mynetworks') {
      metrics.feedRequests.inc({ feed: 'whoson', result: 'accepted' });
      this.o.logger.info({ ...base, granted: false, reason: 'mynetworks' }, `whoson: ${ip} is in mynetworks (relays anyway): no grant needed (LOGIN from ${caller})`);
      return { line: '+LOGIN OK' };
    }
    metrics.feedRequests.inc({ feed: 'whoson', result: 'refused' });
    this.o.logger.warn({ ...base, event: 'whoson_refused', command: 'LOGIN', reason: result.reason }, `whoson: LOGIN ${ip} from ${caller} refused: ${result.detail}`);
    return { line: `*LOGIN refused: ${result.reason}` };
  }

  private async logout(caller: string, transport: Transport, ip: string): Promise<Reply> {
    // Pending LOGINs first: a LOGIN then LOGOUT on one connection must end without a grant.
    await this.batcher.drain();
    const existed = await this.o.map.delete(ip);
    metrics.feedRequests.inc({ feed: 'whoson', result: 'accepted' });
    this.o.logger.info({ event: 'whoson_logout', caller_ip: caller, transport, client_ip: ip, deleted: existed }, `whoson: LOGOUT ${ip} from ${caller}: ${existed ? 'grant deleted' : 'no grant'}`);
    return { line: existed ? '+LOGOUT record deleted' : '+LOGOUT no such record, nothing done' };
  }

  private async query(caller: string, transport: Transport, ip: string): Promise<Reply> {
    const grant = await this.o.map.lookup(ip, this.o.clock());
    metrics.feedRequests.inc({ feed: 'whoson', result: 'accepted' });
    this.o.logger.info({ event: 'whoson_query', caller_ip: caller, transport, client_ip: ip, found: grant !== undefined, user: grant?.user ?? undefined }, `whoson: QUERY ${ip} from ${caller}: ${grant ? `logged in${grant.user ? ` as ${grant.user}` : ''}` : 'not logged in'}`);
    if (grant === undefined) return { line: '-Not logged in' };
    return { line: `+${grant.user ?? ''}` };
  }
}

/**
 * Splits a TCP byte stream into whoson requests: a request line followed by an empty line. Returns the
 * complete requests, or a framing error (then the connection answers `*` and closes).
 */
export class RequestFramer {
  private buf = '';
  private request: string | undefined;

  push(chunk: string): { requests: string[]; framingError?: string } {
    this.buf += chunk;
    const requests: string[] = [];
    const bound = this.buf.length + 1; // every turn consumes at least one byte (its newline)
    for (let i = 0; i < bound; i++) {
      const nl = this.buf.indexOf('\n');
      if (nl === -1) break;
      let line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      if (line.endsWith('\r')) line = line.slice(0, -1);
      if (line.length > MAX_LINE) return { requests, framingError: `line longer than ${MAX_LINE} bytes` };
      if (this.request === undefined) {
        if (line === '') continue; // stray empty lines between requests are harmless
        this.request = line;
      } else {
        const req = this.request;
        this.request = undefined;
        if (line !== '') return { requests, framingError: 'a request line must be followed by an empty line' };
        requests.push(req);
      }
    }
    if (this.buf.length > MAX_LINE) return { requests, framingError: `line longer than ${MAX_LINE} bytes` };
    return { requests };
  }
}

/** One UDP datagram → its request line, or a framing error. */
export function datagramRequest(msg: Buffer): { line: string } | { error: string } {
  if (msg.length > MAX_DATAGRAM) return { error: `datagram of ${msg.length} bytes (at most ${MAX_DATAGRAM})` };
  const text = msg.toString('utf8');
  const lines = text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  const nonEmpty = lines.filter((l) => l.trim() !== ''); // padding after the request is not a second request
  if (nonEmpty.length === 0) return { error: 'empty request' };
  if (nonEmpty.length > 1) return { error: 'one request per datagram' };
  if (nonEmpty[0]!.length > MAX_LINE) return { error: `line longer than ${MAX_LINE} bytes` };
  return { line: nonEmpty[0]! };
}

function frame(line: string): string {
  return `${line}\r\n\r\n`;
}

export async function startWhosonServer(o: WhosonServerOptions): Promise<WhosonServer> {
  const svc = new WhosonService(o);
  const log = o.logger;
  const idleMs = o.idleTimeoutMs ?? 60_000;
  const udpSockets: UdpSocket[] = [];
  const tcpServers: Server[] = [];
  const connections = new Set<Socket>();
  const perCaller = new Map<string, number>();
  const listeners: WhosonListener[] = [];
  let stopping = false;

  const closeAll = async (): Promise<void> => {
    for (const s of udpSockets) await new Promise<void>((r) => s.close(() => r()));
    for (const c of connections) c.destroy();
    for (const s of tcpServers) if (s.listening) await new Promise<void>((r) => s.close(() => r()));
  };

  function handleConnection(socket: Socket): void {
    const caller = normalizeIp(socket.remoteAddress ?? '') ?? String(socket.remoteAddress);
    socket.on('error', () => undefined);
    const open = (perCaller.get(caller) ?? 0) + 1;
    if (stopping || open > MAX_TCP_PER_CALLER) {
      metrics.feedRequests.inc({ feed: 'whoson', result: 'refused' });
      log.warn({ event: 'whoson_refused', caller_ip: caller, transport: 'tcp', reason: stopping ? 'stopping' : 'too_many_connections' }, `whoson: TCP connection from ${caller} refused`);
      socket.end(frame('*Too many connections'));
      return;
    }
    perCaller.set(caller, open);
    connections.add(socket);
    socket.setEncoding('utf8');
    socket.setTimeout(idleMs, () => socket.destroy());
    socket.on('close', () => {
      connections.delete(socket);
      const n = (perCaller.get(caller) ?? 1) - 1;
      if (n <= 0) perCaller.delete(caller);
      else perCaller.set(caller, n);
    });
    const framer = new RequestFramer();
    let chain: Promise<void> = Promise.resolve();
    let pending = 0;
    let closing = false;
    socket.on('data', (chunk: string) => {
      if (closing) return;
      const { requests, framingError } = framer.push(chunk);
      const work: Array<{ line: string } | { error: string }> = requests.map((line) => ({ line }));
      if (framingError !== undefined) {
        work.push({ error: framingError });
        closing = true;
      }
      for (const w of work) {
        pending++;
        if (pending >= MAX_PIPELINED) socket.pause();
        chain = chain
          .then(async () => {
            if (socket.destroyed) return;
            const reply: Reply =
              'error' in w
                ? (log.warn({ event: 'whoson_bad_request', caller_ip: caller, transport: 'tcp', reason: w.error }, `whoson: bad request from ${caller}: ${w.error}; closing`), { line: `*Bad request: ${w.error}`, close: true })
                : await svc.handle(w.line, caller, 'tcp');
            if (reply.close) {
              closing = true;
              socket.end(frame(reply.line));
            } else if (!closing) {
              socket.write(frame(reply.line));
            }
          })
          .catch((err: unknown) => {
            log.error({ event: 'whoson_internal_error', caller_ip: caller, err }, `whoson: internal error for ${caller}`);
            socket.destroy();
          })
          .finally(() => {
            pending--;
            if (pending < MAX_PIPELINED / 2 && socket.isPaused() && !socket.destroyed) socket.resume();
          });
      }
    });
  }

  try {
    for (const e of o.listen) {
      const server = createServer();
      server.maxConnections = MAX_TCP_CONNECTIONS;
      server.on('connection', handleConnection);
      await new Promise<void>((resolve, reject) => {
        server.once('error', (err) => reject(listenError('whoson (tcp)', endpointText(e), err as NodeJS.ErrnoException)));
        server.listen({ host: e.host, port: e.port, exclusive: true, ipv6Only: e.host.includes(':') }, () => {
          server.removeAllListeners('error');
          resolve();
        });
      });
      server.on('error', (err) => log.error({ event: 'whoson_socket_error', transport: 'tcp', err }, `whoson: TCP listener error: ${err.message}`));
      tcpServers.push(server);
      const tcp = server.address() as AddressInfo;
      // UDP on the same port as TCP (port 0: the one the kernel gave TCP), as whoson clients expect.
      const sock = createSocket({ type: e.host.includes(':') ? 'udp6' : 'udp4', ipv6Only: e.host.includes(':') });
      await new Promise<void>((resolve, reject) => {
        sock.once('error', (err) => {
          sock.close();
          reject(listenError('whoson (udp)', endpointText({ host: e.host, port: tcp.port }), err as NodeJS.ErrnoException));
        });
        sock.bind({ address: e.host, port: tcp.port, exclusive: true }, () => {
          sock.removeAllListeners('error');
          resolve();
        });
      });
      sock.on('error', (err) => log.error({ event: 'whoson_socket_error', transport: 'udp', err }, `whoson: UDP socket error: ${err.message}`));
      udpSockets.push(sock);
      sock.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
        const caller = normalizeIp(rinfo.address) ?? rinfo.address;
        const req = datagramRequest(msg);
        const replyTo = (line: string): void => {
          const out = Buffer.from(frame(line));
          // No amplification towards hosts in neither allow list (a spoofed source address is the victim).
          if (stopping || (out.length > msg.length && !svc.known(caller))) return;
          sock.send(out, rinfo.port, rinfo.address, () => undefined);
        };
        if ('error' in req) {
          // Rate-limited like any request, so malformed datagrams cannot flood the log either.
          const d = svc.limiter.take(caller);
          if (!d.ok) return;
          metrics.feedRequests.inc({ feed: 'whoson', result: 'refused' });
          log.warn({ event: 'whoson_bad_request', caller_ip: caller, transport: 'udp', reason: req.error }, `whoson: bad request from ${caller}: ${req.error}`);
          replyTo(`*Bad request: ${req.error}`);
          return;
        }
        svc.handle(req.line, caller, 'udp').then(
          (reply) => {
            if (!reply.limited) replyTo(reply.line);
          },
          (err: unknown) => log.error({ event: 'whoson_internal_error', caller_ip: caller, err }, `whoson: internal error for ${caller}`),
        );
      });
      const udp = sock.address();
      listeners.push({ tcp, udp });
      log.info({ event: 'whoson_listening', address: tcp.address, port: tcp.port }, `whoson listening on ${endpointText({ host: tcp.address, port: tcp.port })} (tcp and udp)`);
    }
  } catch (err) {
    await closeAll();
    throw err;
  }

  return {
    listeners,
    async stop() {
      if (stopping) return;
      stopping = true;
      await closeAll();
      await svc.batcher.drain();
      log.info({ event: 'whoson_stopped' }, 'whoson server stopped');
    },
  };
}
