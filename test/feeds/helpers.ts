// Shared by the feed tests: a fresh LMDB access map in a temp directory, and raw RPC / whoson clients
// over loopback (UDP from a chosen 127.x source address, TCP with record marking). Every wait is bounded.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import { openAccessMap, type AccessMap } from '../../src/store/index.ts';
import { CidrSet } from '../../src/net/index.ts';
import { systemClock, type Clock } from '../../src/clock.ts';
import type { Logger } from '../../src/log/logger.ts';
import { silentLogger } from '../../src/log/logger.ts';

export interface TempMap {
  map: AccessMap;
  dir: string;
  close(): Promise<void>;
}

export async function tempMap(opts: { logger?: Logger; clock?: Clock } = {}): Promise<TempMap> {
  const dir = await mkdtemp(join(tmpdir(), 'rg-feeds-'));
  const map = await openAccessMap({
    type: 'lmdb',
    path: join(dir, 'map'),
    grace: 1800,
    mynetworks: new CidrSet(['127.0.0.0/8', '::1/128', '198.51.100.0/24']),
    neverAuthorize: new CidrSet(['0.0.0.0/8', '224.0.0.0/4', '255.255.255.255/32', '::/128', 'ff00::/8']),
    clock: opts.clock ?? systemClock,
    logger: opts.logger ?? silentLogger(),
  });
  return {
    map,
    dir,
    async close() {
      await map.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Sends one datagram from `from` (a loopback address) and waits up to `timeoutMs` for one answer. */
export function udpExchange(port: number, msg: Buffer, opts: { from?: string; host?: string; timeoutMs?: number } = {}): Promise<Buffer | undefined> {
  const host = opts.host ?? '127.0.0.1';
  return new Promise((resolve, reject) => {
    const sock = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const timer = setTimeout(() => {
      sock.close();
      resolve(undefined);
    }, opts.timeoutMs ?? 1000);
    sock.on('error', (err) => {
      clearTimeout(timer);
      sock.close();
      reject(err);
    });
    sock.on('message', (m) => {
      clearTimeout(timer);
      sock.close();
      resolve(m);
    });
    sock.bind({ address: opts.from ?? (host.includes(':') ? '::1' : '127.0.0.1'), port: 0 }, () => sock.send(msg, port, host));
  });
}

/** A TCP client that collects what the server sends and can wait for a byte count or for the close. */
export class TcpPeer {
  readonly socket: Socket;
  private data = Buffer.alloc(0);
  closed = false;
  private waiters: Array<() => void> = [];

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => {
      this.data = Buffer.concat([this.data, d]);
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  static open(port: number, opts: { host?: string; from?: string } = {}): Promise<TcpPeer> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: opts.host ?? '127.0.0.1', port, localAddress: opts.from });
      s.once('connect', () => resolve(new TcpPeer(s)));
      s.once('error', reject);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  get received(): Buffer {
    return this.data;
  }

  write(b: Buffer | string): void {
    this.socket.write(b);
  }

  /** Waits until `pred(received)` holds or the connection closed or `timeoutMs` passed. */
  async until(pred: (b: Buffer) => boolean, timeoutMs = 2000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this.data) && !this.closed && Date.now() < deadline) {
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return this.data;
  }

  /** Resolves true once the server closed the connection (within `timeoutMs`). */
  async waitClosed(timeoutMs = 2000): Promise<boolean> {
    await this.until(() => false, timeoutMs);
    return this.closed;
  }

  close(): void {
    this.socket.destroy();
  }
}

// ---- RPC messages built by hand (independent of src/feeds/rpc.ts, so the tests check the wire format) ----

function words(...ws: number[]): Buffer {
  const b = Buffer.alloc(ws.length * 4);
  ws.forEach((w, i) => b.writeUInt32BE(w >>> 0, i * 4));
  return b;
}

function opaque(data: Buffer): Buffer {
  const pad = (4 - (data.length % 4)) % 4;
  return Buffer.concat([words(data.length), data, Buffer.alloc(pad)]);
}

export interface CallSpec {
  xid?: number;
  rpcvers?: number;
  prog?: number;
  vers?: number;
  proc?: number;
  credFlavor?: number;
  cred?: Buffer;
  verfFlavor?: number;
  verf?: Buffer;
  args?: Buffer;
}

/** An ONC RPC CALL (RFC 5531 §9), DRAC program by default. */
export function rpcCall(s: CallSpec = {}): Buffer {
  return Buffer.concat([
    words(s.xid ?? 0x01020304, 0, s.rpcvers ?? 2, s.prog ?? 900101, s.vers ?? 1, s.proc ?? 1, s.credFlavor ?? 0),
    opaque(s.cred ?? Buffer.alloc(0)),
    words(s.verfFlavor ?? 0),
    opaque(s.verf ?? Buffer.alloc(0)),
    s.args ?? Buffer.alloc(0),
  ]);
}

/** DRAC v1 ADD argument: the IPv4 address as one unsigned int (192.0.2.10 → C0 00 02 0A). */
export function v1Arg(ip: string): Buffer {
  return Buffer.from(ip.split('.').map(Number));
}

/** DRAC v2 ADD argument: 16 ints, one per address byte; `signExtend` writes bytes >= 0x80 as rpcgen's xdr_char does. */
export function v2Arg(bytes: readonly number[], signExtend = true): Buffer {
  return words(...bytes.map((b) => (signExtend && b >= 0x80 ? b - 256 : b)));
}

/** 16 bytes of an IPv6 address written in full (8 groups). */
export function v6Bytes(full: string): number[] {
  const out: number[] = [];
  for (const g of full.split(':')) {
    const v = parseInt(g, 16);
    out.push(v >> 8, v & 0xff);
  }
  return out;
}

export function recordMark(len: number, last: boolean): Buffer {
  return words((last ? 0x80000000 : 0) | len);
}

export interface DecodedReply {
  xid: number;
  /** 'accepted' / 'denied' */
  status: 'accepted' | 'denied';
  acceptStat?: number;
  rejectStat?: number;
  authStat?: number;
  low?: number;
  high?: number;
  /** ADD result, when the reply carries one */
  result?: number;
  length: number;
}

/** Decodes a reply by hand. */
export function decodeReply(b: Buffer): DecodedReply {
  const w = (i: number) => b.readUInt32BE(i * 4);
  const out: DecodedReply = { xid: w(0), status: w(2) === 0 ? 'accepted' : 'denied', length: b.length };
  if (w(1) !== 1) throw new Error('not a reply');
  if (out.status === 'denied') {
    out.rejectStat = w(3);
    if (out.rejectStat === 0) {
      out.low = w(4);
      out.high = w(5);
    } else out.authStat = w(4);
    return out;
  }
  // verifier: flavor, length (0), then accept_stat
  const verfLen = w(4);
  const base = 5 + Math.ceil(verfLen / 4);
  out.acceptStat = w(base);
  if (out.acceptStat === 2) {
    out.low = w(base + 1);
    out.high = w(base + 2);
  } else if (out.acceptStat === 0 && b.length >= (base + 2) * 4) out.result = w(base + 1);
  return out;
}

export { words, opaque };
