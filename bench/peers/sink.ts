// The minimal SMTP sink every path of the smtp benchmark ends at (direct, through relaygate, through Haraka),
// plus a stock smtp-server for one reference figure. Run as a forked child of bench/smtp.ts (its own process,
// so its CPU never shares an event loop with the load generator or the server under test); it reports its
// ports over IPC and answers `stats` requests with what it counted.
//
// Why a raw-socket sink and not smtp-server: the sink should be the cheapest upstream a gateway could have,
// so the figures measure the gateway, not the sink. smtp-server parses every command into a session object,
// runs handler callbacks and streams DATA through a Transform; this one answers fixed replies and scans the
// body for CRLF.CRLF with Buffer.indexOf. It speaks exactly what nodemailer's SMTPConnection (relaygate's
// upstream pool) and Haraka's smtp_forward send: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT — and it
// advertises no PIPELINING, XFORWARD, STARTTLS or AUTH, so every client sends one command per round trip,
// the same for all paths.
//
// The stock smtp-server (3.21, defaults, messages discarded, only disableReverseLookup) keeps its hard-coded
// 100 ms greeting delay: the connection-per-message reference for what relaygate's greeting_delay = 0 fixes.
//
// Security: binds 127.0.0.1 only, port 0; stores nothing (message bytes are counted and dropped).

import net from 'node:net';
import { pathToFileURL } from 'node:url';
import { SMTPServer } from 'smtp-server';

export interface SinkStats {
  messages: number;
  connections: number;
  bytes: number;
}

export interface RawSink {
  readonly port: number;
  readonly stats: SinkStats;
  close(): Promise<void>;
}

const EHLO_REPLY = '250-sink.bench\r\n250-8BITMIME\r\n250-SIZE 104857600\r\n250 ENHANCEDSTATUSCODES\r\n';
const END = Buffer.from('\r\n.\r\n');
/** a command line longer than this ends the session (bounded memory per connection) */
const MAX_LINE = 4096;

/**
 * One raw-sink session: fed the bytes a client sent, it returns the replies to write (fixed texts) and
 * counts what it saw. Kept apart from the socket so the CRLF.CRLF search across chunk boundaries can be
 * tested directly (test/bench/smtp-peers.test.ts).
 */
export class RawSinkSession {
  /** set when the session must end (QUIT answered, or a command line over MAX_LINE) */
  ended = false;
  readonly #stats: SinkStats;
  #inData = false;
  #line = '';
  // the last up-to-4 bytes of DATA seen so far, so CRLF.CRLF split over two chunks is still found
  #tail: Buffer = Buffer.alloc(0);

  constructor(stats: SinkStats) {
    this.#stats = stats;
  }

  /** The greeting. */
  greeting(): string {
    return '220 sink.bench ESMTP bench sink\r\n';
  }

  /** Consumes one chunk; returns the replies it completes, in order, joined. */
  push(chunk: Buffer): string {
    let out = '';
    let rest: Buffer | undefined = chunk;
    // bounded: each pass consumes at least one line or one message end
    for (let guard = 0; rest !== undefined && rest.length > 0 && !this.ended && guard < 100_000; guard++) {
      if (this.#inData) {
        const scan: Buffer = this.#tail.length > 0 ? Buffer.concat([this.#tail, rest]) : rest;
        const at: number = scan.indexOf(END);
        if (at === -1) {
          this.#stats.bytes += rest.length;
          this.#tail = Buffer.from(scan.subarray(Math.max(0, scan.length - 4)));
          break;
        }
        // END is never wholly inside the old tail (4 bytes), so at least one byte of `rest` is consumed
        const consumed: number = at + END.length - this.#tail.length;
        this.#stats.bytes += consumed;
        rest = consumed < rest.length ? rest.subarray(consumed) : undefined;
        this.#inData = false;
        this.#tail = Buffer.alloc(0);
        this.#stats.messages++;
        out += `250 2.0.0 Ok: queued as S${this.#stats.messages.toString(16).toUpperCase()}\r\n`;
        continue;
      }
      const nl = rest.indexOf(10);
      if (nl === -1) {
        this.#line += rest.toString('latin1');
        if (this.#line.length > MAX_LINE) this.ended = true;
        break;
      }
      this.#line += rest.subarray(0, nl).toString('latin1');
      rest = nl + 1 < rest.length ? rest.subarray(nl + 1) : undefined;
      const cmd = this.#line.endsWith('\r') ? this.#line.slice(0, -1) : this.#line;
      this.#line = '';
      out += this.#command(cmd);
    }
    return out;
  }

  #command(cmdLine: string): string {
    switch (cmdLine.slice(0, 4).toUpperCase()) {
      case 'EHLO':
        return EHLO_REPLY;
      case 'HELO':
        return '250 sink.bench\r\n';
      case 'MAIL':
        return '250 2.1.0 Ok\r\n';
      case 'RCPT':
        return '250 2.1.5 Ok\r\n';
      case 'DATA':
        this.#inData = true;
        this.#tail = Buffer.from('\r\n'); // the DATA line's own CRLF: a body of just ".\r\n" ends at once
        return '354 End data with <CR><LF>.<CR><LF>\r\n';
      case 'RSET':
      case 'NOOP':
        return '250 2.0.0 Ok\r\n';
      case 'QUIT':
        this.ended = true;
        return '221 2.0.0 Bye\r\n';
      default:
        return '502 5.5.2 Error: command not recognized\r\n';
    }
  }
}

/** The raw sink: fixed replies, DATA scanned for CRLF.CRLF, nothing kept. */
export async function startRawSink(host = '127.0.0.1'): Promise<RawSink> {
  const stats: SinkStats = { messages: 0, connections: 0, bytes: 0 };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    stats.connections++;
    sockets.add(sock);
    sock.setNoDelay(true);
    sock.on('error', () => undefined);
    sock.on('close', () => sockets.delete(sock));
    const session = new RawSinkSession(stats);
    sock.on('data', (chunk: Buffer) => {
      const out = session.push(chunk);
      if (session.ended) sock.end(out);
      else if (out !== '') sock.write(out);
    });
    sock.write(session.greeting());
  });
  server.maxConnections = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    stats,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** smtp-server as shipped (100 ms greeting delay), discarding every message; no AUTH, no STARTTLS. */
export async function startStockSmtpServer(host = '127.0.0.1'): Promise<{ port: number; stats: SinkStats; close(): Promise<void> }> {
  const stats: SinkStats = { messages: 0, connections: 0, bytes: 0 };
  const server = new SMTPServer({
    name: 'stock.bench',
    logger: false,
    disableReverseLookup: true,
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    maxClients: 5000,
    onConnect(_session, cb) {
      stats.connections++;
      cb();
    },
    onData(stream, _session, cb) {
      stream.on('data', (c: Buffer) => (stats.bytes += c.length));
      stream.on('end', () => {
        stats.messages++;
        cb(null, `2.0.0 Ok: queued as T${stats.messages.toString(16).toUpperCase()}`);
      });
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const port = (server.server.address() as net.AddressInfo).port;
  return {
    port,
    stats,
    close: () =>
      new Promise<void>((resolve) => {
        server.options.closeTimeout = 100;
        for (const c of server.connections) c._socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** IPC protocol between bench/smtp.ts and this file run as a child. */
export type SinkRequest = { op: 'stats'; id: number } | { op: 'close' };
export type SinkReply =
  | { op: 'ready'; rawPort: number; stockPort: number }
  | { op: 'stats'; id: number; raw: SinkStats; stock: SinkStats };

async function childMain(): Promise<void> {
  const raw = await startRawSink();
  const stock = await startStockSmtpServer();
  const send = (m: SinkReply): void => void process.send?.(m);
  process.on('message', (m: SinkRequest) => {
    if (m.op === 'stats') send({ op: 'stats', id: m.id, raw: { ...raw.stats }, stock: { ...stock.stats } });
    else if (m.op === 'close') void Promise.all([raw.close(), stock.close()]).then(() => process.exit(0));
  });
  // the parent going away (crash, ^C) must not leave the sink behind
  process.on('disconnect', () => process.exit(0));
  send({ op: 'ready', rawPort: raw.port, stockPort: stock.port });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  void childMain();
}
