// The DRAC-compatible server: rpc.dracd's RPC program, so existing DRAC clients (qpopper, UW/panda imapd,
// Cyrus' drac patch, the Dovecot 2.x DRAC plugins, tpop3d, Courier authdrac) work unchanged.
//
// Protocol (shared/reference/protocols.md §7; DRAC 1.12 drac.x plus Debian's IPv6 patch):
//   ONC RPC v2 (RFC 5531), XDR (RFC 4506), program 900101, AUTH_NONE (AUTH_SYS accepted too);
//   procedure 0 = NULL (ping, answered to anyone), procedure 1 = DRACPROC_ADD;
//   version 1: argument = the IPv4 address as one XDR unsigned int (192.0.2.10 travels as C0 00 02 0A);
//   version 2: argument = 16 XDR ints, one per IPv6 address byte, possibly sign-extended (rpcgen's
//              xdr_char): -128..255 accepted, the low 8 bits taken, anything else is GARBAGE_ARGS;
//   result: enum addstat { ADD_SUCCESS = 0, ADD_PERM = 1, ADD_SYSERR = 2, ADD_UNKNOWN = 3 }.
//   UDP, and TCP with record marking (rpc.ts). Registered with the local portmapper (portmap.ts).
// What an ADD answers:
//   caller not in the allow list                      → ADD_PERM (logged drac_refused reason=not_allowed)
//   grant recorded                                     → ADD_SUCCESS (drac_add)
//   address in mynetworks (it relays anyway)           → ADD_SUCCESS, no grant (drac_add granted=false)
//   address in never_authorize, or not usable          → ADD_PERM (drac_refused reason=never_authorize...)
//   store failure or write queue full                  → ADD_SYSERR (the client logs it; the next login retries)
// Hostile input: see rpc.ts for the RPC-level replies; plus a per-caller rate limit (excess dropped, logged
// once a second), a bound on datagram and record size, on TCP connections (total and per caller) and an
// idle timeout. An exception while handling one message is logged and that message is dropped; the
// daemon goes on.
// Grants carry source `drac` and no user (a DRAC login clears a stored user: the store's merge rule).
// Security: nothing in a call is trusted but its shape; the caller is the address the kernel reports.

import { metrics } from '../metrics/metrics.ts';
import { createSocket, type Socket as UdpSocket, type RemoteInfo } from 'node:dgram';
import { createServer, type Server, type Socket, type AddressInfo } from 'node:net';
import type { AccessMap, RecordResult } from '../store/index.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log/logger.ts';
import { normalizeIp, type CidrSet } from '../net/index.ts';
import { listenError } from '../net/listen-error.ts';
import { RelaygateError } from '../errors.ts';
import { endpointText, type Endpoint } from '../frontends/smtp/endpoints.ts';
import { XdrReader, XdrWriter } from './xdr.ts';
import { garbageArgsReply, parseCall, procUnavailReply, progMismatchReply, progUnavailReply, successReply, frameRecord, RecordReader } from './rpc.ts';
import { LoginBatcher } from './batcher.ts';
import { RateLimiter } from './rate-limit.ts';
import { PortmapClient, PortmapError, describeTransport, IPPROTO_TCP, IPPROTO_UDP, type PortmapClientOptions } from './portmap.ts';

export const DRAC_PROG = 900101;
export const DRAC_VERS_IPV4 = 1;
export const DRAC_VERS_IPV6 = 2;
export const DRACPROC_NULL = 0;
export const DRACPROC_ADD = 1;
export const AddStat = { ADD_SUCCESS: 0, ADD_PERM: 1, ADD_SYSERR: 2, ADD_UNKNOWN: 3 } as const;
export type AddStatName = keyof typeof AddStat;

/** Largest call accepted (a real one is 44 bytes for v1, 104 for v2, plus at most 2 × 400 of auth). */
export const MAX_CALL_BYTES = 4096;
const MAX_FRAGMENTS = 64;
const MAX_TCP_CONNECTIONS = 256;
const MAX_TCP_PER_CALLER = 16;
const MAX_PIPELINED = 32;

export interface DracServerOptions {
  readonly listenUdp: readonly Endpoint[];
  readonly listenTcp: readonly Endpoint[];
  /** callers allowed to ADD */
  readonly allow: CidrSet;
  readonly rpcbind: boolean | 'auto';
  /** requests per second per caller */
  readonly rateLimit: number;
  readonly map: AccessMap;
  readonly logger: Logger;
  readonly clock: Clock;
  /** portmapper transports and timeout (tests) */
  readonly portmap?: PortmapClientOptions;
  readonly idleTimeoutMs?: number;
}

export interface DracCounters {
  calls: number;
  added: number;
  refused: number;
  errors: number;
  dropped: number;
  rateLimited: number;
}

export interface DracServer {
  /** bound addresses, in configuration order */
  readonly udp: readonly AddressInfo[];
  readonly tcp: readonly AddressInfo[];
  /** where the registration went, or undefined when not registered */
  readonly registeredWith: string | undefined;
  readonly counters: DracCounters;
  stop(): Promise<void>;
}

type Transport = 'udp' | 'tcp';

function ipv4Text(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;
}

function ipv6Text(bytes: readonly number[]): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return groups.join(':'); // normalizeIp() turns it into RFC 5952 text (and ::ffff:a.b.c.d into IPv4)
}

/** Decodes DRACPROC_ADD's argument; undefined = GARBAGE_ARGS. */
export function decodeAddArgs(vers: number, args: Buffer): string | undefined {
  try {
    const r = new XdrReader(args);
    if (vers === DRAC_VERS_IPV4) return ipv4Text(r.uint('ip_addr'));
    const bytes: number[] = [];
    for (let i = 0; i < 16; i++) {
      const v = r.int('ip_addr6 byte');
      if (v < -128 || v > 255) return undefined;
      bytes.push(v & 0xff);
    }
    return ipv6Text(bytes);
  } catch {
    return undefined;
  }
}

function addReply(xid: number, stat: number): Buffer {
  return successReply(xid, new XdrWriter(4).uint(stat).done());
}

class DracService {
  readonly counters: DracCounters = { calls: 0, added: 0, refused: 0, errors: 0, dropped: 0, rateLimited: 0 };
  readonly batcher: LoginBatcher;
  readonly limiter: RateLimiter;

  constructor(private readonly o: DracServerOptions) {
    this.batcher = new LoginBatcher(o.map);
    this.limiter = new RateLimiter({ rate: o.rateLimit, clock: o.clock });
  }

  /** Rate limit per caller; false: drop this message (logged at most once a second per caller). */
  admit(caller: string, transport: Transport): boolean {
    const d = this.limiter.take(caller);
    if (d.ok) return true;
    this.counters.rateLimited++;
    metrics.feedRequests.inc({ feed: 'drac', result: 'refused' });
    if (d.report > 0) {
      this.o.logger.warn({ event: 'drac_rate_limited', caller_ip: caller, transport, dropped: d.report, limit_per_s: this.o.rateLimit }, `DRAC: ${caller} over ${this.o.rateLimit} requests/s: dropped ${d.report} request(s)`);
    }
    return false;
  }

  drop(caller: string, transport: Transport, reason: string, xid?: number): undefined {
    this.counters.dropped++;
    metrics.feedRequests.inc({ feed: 'drac', result: 'refused' });
    this.o.logger.warn({ event: 'drac_dropped', caller_ip: caller, transport, reason, xid }, `DRAC: dropped a message from ${caller}: ${reason}`);
    return undefined;
  }

  private rpcError(caller: string, transport: Transport, error: string, xid: number, reply: Buffer): Buffer {
    this.counters.errors++;
    metrics.feedRequests.inc({ feed: 'drac', result: 'error' });
    this.o.logger.warn({ event: 'drac_rpc_error', caller_ip: caller, transport, error, xid }, `DRAC: ${error} to ${caller}`);
    return reply;
  }

  /** One message in, at most one reply out. */
  async handle(msg: Buffer, caller: string, transport: Transport): Promise<Buffer | undefined> {
    if (msg.length > MAX_CALL_BYTES) return this.drop(caller, transport, `oversized message (${msg.length} bytes, at most ${MAX_CALL_BYTES})`);
    const parsed = parseCall(msg);
    if (parsed.kind === 'drop') return this.drop(caller, transport, parsed.reason, parsed.xid);
    if (parsed.kind === 'deny') return this.rpcError(caller, transport, parsed.error, parsed.xid, parsed.reply);
    const { xid, prog, vers, proc, args } = parsed.call;
    this.counters.calls++;
    if (prog !== DRAC_PROG) return this.rpcError(caller, transport, `PROG_UNAVAIL (program ${prog})`, xid, progUnavailReply(xid));
    if (vers !== DRAC_VERS_IPV4 && vers !== DRAC_VERS_IPV6) return this.rpcError(caller, transport, `PROG_MISMATCH (version ${vers}; 1..2 supported)`, xid, progMismatchReply(xid, DRAC_VERS_IPV4, DRAC_VERS_IPV6));
    if (proc === DRACPROC_NULL) {
      this.o.logger.debug({ event: 'drac_null', caller_ip: caller, transport, vers }, `DRAC: NULL from ${caller}`);
      return successReply(xid);
    }
    if (proc !== DRACPROC_ADD) return this.rpcError(caller, transport, `PROC_UNAVAIL (procedure ${proc})`, xid, procUnavailReply(xid));
    const requested = decodeAddArgs(vers, args);
    if (requested === undefined) return this.rpcError(caller, transport, `GARBAGE_ARGS (version ${vers} ADD argument of ${args.length} bytes)`, xid, garbageArgsReply(xid));
    return addReply(xid, await this.add(caller, transport, vers, requested));
  }

  private async add(caller: string, transport: Transport, vers: number, requested: string): Promise<number> {
    const base = { caller_ip: caller, transport, vers };
    if (!this.o.allow.contains(caller)) {
      this.counters.refused++;
      metrics.feedRequests.inc({ feed: 'drac', result: 'refused' });
      this.o.logger.warn({ event: 'drac_refused', ...base, client_ip: requested, reason: 'not_allowed', result: 'ADD_PERM' }, `DRAC: ADD ${requested} from ${caller} refused: caller not in drac.allow / drac.allow_file`);
      return AddStat.ADD_PERM;
    }
    const ip = normalizeIp(requested);
    if (ip === undefined) return this.refuse(base, requested, 'bad_ip');
    let result: RecordResult | 'overloaded';
    try {
      result = await this.batcher.submit({ ip, source: 'drac' });
    } catch (err) {
      this.counters.errors++;
      metrics.feedRequests.inc({ feed: 'drac', result: 'error' });
      this.o.logger.error({ event: 'drac_store_error', ...base, client_ip: ip, err, result: 'ADD_SYSERR' }, `DRAC: ADD ${ip} from ${caller} failed: access map write failed: ${(err as Error).message}`);
      return AddStat.ADD_SYSERR;
    }
    if (result === 'overloaded') {
      this.counters.errors++;
      metrics.feedRequests.inc({ feed: 'drac', result: 'error' });
      this.o.logger.warn({ event: 'drac_store_error', ...base, client_ip: ip, reason: 'overloaded', result: 'ADD_SYSERR' }, `DRAC: ADD ${ip} from ${caller} answered ADD_SYSERR: too many writes waiting`);
      return AddStat.ADD_SYSERR;
    }
    if (result.recorded) {
      this.counters.added++;
      metrics.feedRequests.inc({ feed: 'drac', result: 'accepted' });
      this.o.logger.info({ event: 'drac_add', ...base, client_ip: ip, granted: true, expires: result.grant.expires, result: 'ADD_SUCCESS' }, `DRAC: ${ip} may relay until ${new Date(result.grant.expires).toISOString()} (ADD from ${caller})`);
      return AddStat.ADD_SUCCESS;
    }
    if (result.reason === 'mynetworks') {
      this.counters.added++;
      metrics.feedRequests.inc({ feed: 'drac', result: 'accepted' });
      this.o.logger.info({ event: 'drac_add', ...base, client_ip: ip, granted: false, reason: 'mynetworks', result: 'ADD_SUCCESS' }, `DRAC: ${ip} is in mynetworks (relays anyway): no grant needed (ADD from ${caller})`);
      return AddStat.ADD_SUCCESS;
    }
    return this.refuse(base, ip, result.reason);
  }

  private refuse(base: Record<string, unknown>, ip: string, reason: string): number {
    this.counters.refused++;
    metrics.feedRequests.inc({ feed: 'drac', result: 'refused' });
    this.o.logger.warn({ event: 'drac_refused', ...base, client_ip: ip, reason, result: 'ADD_PERM' }, `DRAC: ADD ${ip} from ${String(base.caller_ip)} refused: ${reason}`);
    return AddStat.ADD_PERM;
  }
}

function bindUdp(e: Endpoint): Promise<UdpSocket> {
  return new Promise((resolve, reject) => {
    const sock = createSocket({ type: e.host.includes(':') ? 'udp6' : 'udp4', ipv6Only: e.host.includes(':') });
    sock.once('error', (err) => {
      sock.close();
      reject(listenError('drac (udp)', endpointText(e), err as NodeJS.ErrnoException));
    });
    sock.bind({ address: e.host, port: e.port, exclusive: true }, () => {
      sock.removeAllListeners('error');
      resolve(sock);
    });
  });
}

function listenTcp(server: Server, e: Endpoint): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(listenError('drac (tcp)', endpointText(e), err as NodeJS.ErrnoException)));
    server.listen({ host: e.host, port: e.port, exclusive: true, ipv6Only: e.host.includes(':') }, () => {
      server.removeAllListeners('error');
      resolve();
    });
  });
}

/** Starts the listeners, then registers with the portmapper (per `rpcbind`). */
export async function startDracServer(o: DracServerOptions): Promise<DracServer> {
  const svc = new DracService(o);
  const log = o.logger;
  const udpSockets: UdpSocket[] = [];
  const tcpServers: Server[] = [];
  const connections = new Set<Socket>();
  const perCaller = new Map<string, number>();
  const idleMs = o.idleTimeoutMs ?? 120_000;
  let stopping = false;

  const closeAll = async (): Promise<void> => {
    for (const s of udpSockets) await new Promise<void>((r) => s.close(() => r()));
    for (const c of connections) c.destroy();
    for (const s of tcpServers) if (s.listening) await new Promise<void>((r) => s.close(() => r()));
  };

  try {
    for (const e of o.listenUdp) {
      const sock = await bindUdp(e);
      udpSockets.push(sock);
      sock.on('error', (err) => log.error({ event: 'drac_socket_error', transport: 'udp', err }, `DRAC: UDP socket error: ${err.message}`));
      sock.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
        const caller = normalizeIp(rinfo.address) ?? rinfo.address;
        if (!svc.admit(caller, 'udp')) return;
        svc.handle(msg, caller, 'udp').then(
          (reply) => {
            // Never larger than the datagram that caused it (real calls are >= 40 bytes, every reply <= 32):
            // a spoofed source address gets no amplification.
            if (reply !== undefined && !stopping && reply.length <= msg.length) sock.send(reply, rinfo.port, rinfo.address, () => undefined);
          },
          (err: unknown) => log.error({ event: 'drac_internal_error', caller_ip: caller, transport: 'udp', err }, `DRAC: internal error handling a message from ${caller}`),
        );
      });
    }
    for (const e of o.listenTcp) {
      const server = createServer({ pauseOnConnect: false });
      server.maxConnections = MAX_TCP_CONNECTIONS;
      server.on('connection', (socket) => handleConnection(socket));
      server.on('error', (err) => log.error({ event: 'drac_socket_error', transport: 'tcp', err }, `DRAC: TCP listener error: ${err.message}`));
      await listenTcp(server, e);
      tcpServers.push(server);
    }
  } catch (err) {
    await closeAll();
    throw err;
  }

  function handleConnection(socket: Socket): void {
    const caller = normalizeIp(socket.remoteAddress ?? '') ?? String(socket.remoteAddress);
    socket.on('error', () => undefined); // resets are normal; close does the cleanup
    const open = (perCaller.get(caller) ?? 0) + 1;
    if (stopping || open > MAX_TCP_PER_CALLER) {
      log.warn({ event: 'drac_tcp_refused', caller_ip: caller, reason: stopping ? 'stopping' : 'too_many_connections', limit: MAX_TCP_PER_CALLER }, `DRAC: TCP connection from ${caller} refused`);
      socket.destroy();
      return;
    }
    perCaller.set(caller, open);
    connections.add(socket);
    const reader = new RecordReader({ maxRecord: MAX_CALL_BYTES, maxFragments: MAX_FRAGMENTS });
    let chain: Promise<void> = Promise.resolve();
    let pending = 0;
    socket.setTimeout(idleMs, () => {
      log.info({ event: 'drac_tcp_closed', caller_ip: caller, reason: 'idle' }, `DRAC: closed idle TCP connection from ${caller}`);
      socket.destroy();
    });
    socket.on('close', () => {
      connections.delete(socket);
      const n = (perCaller.get(caller) ?? 1) - 1;
      if (n <= 0) perCaller.delete(caller);
      else perCaller.set(caller, n);
    });
    socket.on('data', (chunk: Buffer) => {
      const records = reader.push(chunk);
      if (typeof records === 'string') {
        svc.counters.dropped++;
        metrics.feedRequests.inc({ feed: 'drac', result: 'refused' });
        log.warn({ event: 'drac_tcp_closed', caller_ip: caller, reason: 'bad_record', detail: records }, `DRAC: closed TCP connection from ${caller}: ${records}`);
        socket.destroy();
        return;
      }
      for (const rec of records) {
        if (!svc.admit(caller, 'tcp')) continue;
        pending++;
        if (pending >= MAX_PIPELINED) socket.pause();
        // Replies go out in call order (one chain per connection); a slow store write delays only this peer.
        chain = chain
          .then(() => svc.handle(rec, caller, 'tcp'))
          .then((reply) => {
            if (reply !== undefined && !socket.destroyed) socket.write(frameRecord(reply));
          })
          .catch((err: unknown) => log.error({ event: 'drac_internal_error', caller_ip: caller, transport: 'tcp', err }, `DRAC: internal error handling a call from ${caller}`))
          .finally(() => {
            pending--;
            if (pending < MAX_PIPELINED / 2 && socket.isPaused() && !socket.destroyed) socket.resume();
          });
      }
    });
  }

  const udp = udpSockets.map((s) => s.address());
  const tcp = tcpServers.map((s) => s.address() as AddressInfo);
  for (const a of udp) log.info({ event: 'drac_listening', transport: 'udp', address: a.address, port: a.port }, `DRAC listening on udp ${endpointText({ host: a.address, port: a.port })}`);
  for (const a of tcp) log.info({ event: 'drac_listening', transport: 'tcp', address: a.address, port: a.port }, `DRAC listening on tcp ${endpointText({ host: a.address, port: a.port })}`);

  // ---- portmapper ----
  let portmap: PortmapClient | undefined;
  let registeredWith: string | undefined;
  if (o.rpcbind !== false) {
    const client = new PortmapClient(o.portmap);
    const udp4 = udp.find((a) => a.family === 'IPv4');
    const tcp4 = tcp.find((a) => a.family === 'IPv4');
    try {
      const refused: string[] = [];
      for (const vers of [DRAC_VERS_IPV4, DRAC_VERS_IPV6]) {
        await client.unset(DRAC_PROG, vers); // a stale entry (crashed run, old rpc.dracd) would make SET fail
        if (udp4 && !(await client.set(DRAC_PROG, vers, IPPROTO_UDP, udp4.port))) refused.push(`v${vers}/udp`);
        if (tcp4 && !(await client.set(DRAC_PROG, vers, IPPROTO_TCP, tcp4.port))) refused.push(`v${vers}/tcp`);
      }
      portmap = client;
      registeredWith = describeTransport(client.transport!);
      if (refused.length > 0) throw new PortmapError(`the portmapper refused SET for ${refused.join(', ')}`, false);
      log.info(
        { event: 'drac_registered', portmapper: registeredWith, prog: DRAC_PROG, versions: [1, 2], udp_port: udp4?.port, tcp_port: tcp4?.port },
        `DRAC: registered program ${DRAC_PROG} versions 1 and 2 with the portmapper (${registeredWith})${udp4 ? `, udp port ${udp4.port}` : ''}${tcp4 ? `, tcp port ${tcp4.port}` : ''}`,
      );
    } catch (err) {
      const unavailable = err instanceof PortmapError && err.unavailable;
      if (o.rpcbind === true) {
        await portmap?.unset(DRAC_PROG, DRAC_VERS_IPV4).catch(() => undefined);
        await portmap?.unset(DRAC_PROG, DRAC_VERS_IPV6).catch(() => undefined);
        await closeAll();
        throw new RelaygateError('RG_ERR_RPCBIND', `drac: registration with the portmapper failed: ${(err as Error).message}`, {
          cause: err,
          details: [unavailable ? 'start rpcbind (systemctl start rpcbind), or set [drac] rpcbind = "auto" and give DRAC clients a fixed port' : 'another program holds 900101 in the portmapper (rpcinfo -p); stop it (rpc.dracd?) or set [drac] rpcbind = false'],
        });
      }
      portmap = unavailable ? undefined : portmap;
      registeredWith = unavailable ? undefined : registeredWith;
      const ephemeral = [...o.listenUdp, ...o.listenTcp].some((e) => e.port === 0);
      log.warn(
        { event: unavailable ? 'drac_rpcbind_absent' : 'drac_rpcbind_failed', err: unavailable ? undefined : err, detail: (err as Error).message },
        unavailable
          ? `DRAC: no portmapper runs on this host: clients that look the server up through rpcbind will not find it${ephemeral ? ' (and the listener ports were chosen by the kernel: set fixed ports or start rpcbind)' : ''}`
          : `DRAC: portmapper registration failed: ${(err as Error).message}`,
      );
    }
  }

  return {
    udp,
    tcp,
    get registeredWith() {
      return registeredWith;
    },
    counters: svc.counters,
    async stop() {
      if (stopping) return;
      stopping = true;
      if (portmap !== undefined) {
        for (const vers of [DRAC_VERS_IPV4, DRAC_VERS_IPV6]) {
          try {
            await portmap.unset(DRAC_PROG, vers);
          } catch (err) {
            log.warn({ event: 'drac_unregister_failed', err }, `DRAC: portmapper UNSET failed: ${(err as Error).message}`);
          }
        }
        log.info({ event: 'drac_unregistered', portmapper: registeredWith }, `DRAC: unregistered program ${DRAC_PROG} from the portmapper`);
        registeredWith = undefined;
      }
      await closeAll();
      await svc.batcher.drain();
      log.info({ event: 'drac_stopped', counters: svc.counters }, 'DRAC server stopped');
    },
  };
}
