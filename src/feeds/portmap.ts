// A minimal portmapper client (PMAP version 2, RFC 1833 §3): SET and UNSET, so that DRAC clients, which
// ask the portmapper for the server's port (clnt_create), find relaygate as they found rpc.dracd.
//
// Transports, tried in this order until one answers:
//   1. rpcbind's local socket (/run/rpcbind.sock, /var/run/rpcbind.sock): stream + record marking. rpcbind
//      accepts SET/UNSET from there even when it is built to refuse them from the network;
//   2. UDP to 127.0.0.1:111 (the classic portmap daemon; Debian's rpcbind accepts it from loopback too);
//   3. TCP to 127.0.0.1:111.
// A transport that is absent fails fast (ENOENT, ECONNREFUSED / ICMP port unreachable); one that stays
// silent is abandoned after `timeoutMs`.
// PMAP v2 carries only a port, and rpcbind publishes it as `0.0.0.0.port` for netid udp/tcp (IPv4).
// Security: talks only to this host's portmapper, never to a configured or received address.

import { createSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import { randomInt } from 'node:crypto';
import { encodeCall, frameRecord, parseReply, RecordReader } from './rpc.ts';
import { XdrReader, XdrWriter } from './xdr.ts';

export const PMAP_PROG = 100000;
export const PMAP_VERS = 2;
export const PMAPPROC_SET = 1;
export const PMAPPROC_UNSET = 2;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

export type PortmapTransport = { readonly kind: 'local'; readonly path: string } | { readonly kind: 'udp' | 'tcp'; readonly host: string; readonly port: number };

export const DEFAULT_TRANSPORTS: readonly PortmapTransport[] = [
  { kind: 'local', path: '/run/rpcbind.sock' },
  { kind: 'local', path: '/var/run/rpcbind.sock' },
  { kind: 'udp', host: '127.0.0.1', port: 111 },
  { kind: 'tcp', host: '127.0.0.1', port: 111 },
];

export function describeTransport(t: PortmapTransport): string {
  return t.kind === 'local' ? `unix:${t.path}` : `${t.kind}:${t.host}:${t.port}`;
}

export class PortmapError extends Error {
  constructor(
    message: string,
    /** true: no portmapper answered on any transport (as opposed to one that answered with an error) */
    readonly unavailable: boolean,
  ) {
    super(message);
    this.name = 'PortmapError';
  }
}

export interface PortmapClientOptions {
  readonly transports?: readonly PortmapTransport[];
  readonly timeoutMs?: number;
}

/** Talks to the first transport that answers, and keeps using it (so UNSET goes where SET went). */
export class PortmapClient {
  private chosen: PortmapTransport | undefined;
  private readonly transports: readonly PortmapTransport[];
  private readonly timeoutMs: number;

  constructor(opts: PortmapClientOptions = {}) {
    this.transports = opts.transports ?? DEFAULT_TRANSPORTS;
    this.timeoutMs = opts.timeoutMs ?? 1000;
  }

  get transport(): PortmapTransport | undefined {
    return this.chosen;
  }

  /** PMAPPROC_SET: true when the portmapper recorded the mapping. */
  set(prog: number, vers: number, prot: number, port: number): Promise<boolean> {
    return this.boolCall(PMAPPROC_SET, mapping(prog, vers, prot, port));
  }

  /** PMAPPROC_UNSET: removes every mapping of prog/vers (both protocols). */
  unset(prog: number, vers: number): Promise<boolean> {
    return this.boolCall(PMAPPROC_UNSET, mapping(prog, vers, 0, 0));
  }

  private async boolCall(proc: number, args: Buffer): Promise<boolean> {
    const results = await this.call(proc, args);
    return new XdrReader(results).uint('bool result') !== 0;
  }

  private async call(proc: number, args: Buffer): Promise<Buffer> {
    const candidates = this.chosen ? [this.chosen] : this.transports;
    const failures: string[] = [];
    for (const t of candidates) {
      const xid = randomInt(1, 0x7fffffff);
      const msg = encodeCall(xid, PMAP_PROG, PMAP_VERS, proc, args);
      let reply: Buffer;
      try {
        reply = t.kind === 'udp' ? await udpCall(t.host, t.port, msg, xid, this.timeoutMs) : await streamCall(t, msg, xid, this.timeoutMs);
      } catch (err) {
        failures.push(`${describeTransport(t)}: ${(err as Error).message}`);
        continue;
      }
      this.chosen = t;
      const parsed = parseReply(reply);
      if (parsed.kind === 'error') throw new PortmapError(`portmapper at ${describeTransport(t)} answered ${parsed.error}`, false);
      return parsed.results;
    }
    throw new PortmapError(`no portmapper answered (${failures.join('; ')})`, true);
  }
}

function mapping(prog: number, vers: number, prot: number, port: number): Buffer {
  return new XdrWriter(16).uint(prog).uint(vers).uint(prot).uint(port).done();
}

function udpCall(host: string, port: number, msg: Buffer, xid: number, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const done = (err: Error | undefined, reply?: Buffer): void => {
      clearTimeout(timer);
      sock.close();
      if (err) reject(err);
      else resolve(reply!);
    };
    const timer = setTimeout(() => done(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    sock.on('error', (err) => done(err));
    sock.on('message', (m) => {
      if (m.length >= 4 && m.readUInt32BE(0) === xid) done(undefined, m);
    });
    // connect(): an ICMP port unreachable then surfaces as ECONNREFUSED instead of a silent timeout.
    sock.connect(port, host, () => sock.send(msg));
  });
}

function streamCall(t: PortmapTransport, msg: Buffer, xid: number, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock: Socket = t.kind === 'local' ? connect({ path: t.path }) : connect({ host: t.host, port: t.port });
    const reader = new RecordReader({ maxRecord: 64 * 1024, maxFragments: 16 });
    let settled = false;
    const done = (err: Error | undefined, reply?: Buffer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(reply!);
    };
    const timer = setTimeout(() => done(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    sock.on('error', (err) => done(err));
    sock.on('close', () => done(new Error('connection closed before a reply')));
    sock.on('connect', () => sock.write(frameRecord(msg)));
    sock.on('data', (chunk: Buffer) => {
      const records = reader.push(chunk);
      if (typeof records === 'string') return done(new Error(records));
      for (const r of records) if (r.length >= 4 && r.readUInt32BE(0) === xid) return done(undefined, r);
    });
  });
}
