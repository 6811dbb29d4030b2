// A minimal upstream MTA for the gateway tests: smtp-server on loopback that records every message it
// accepts (envelope, raw bytes, XFORWARD attributes) and can be told to misbehave: refuse MAIL, some RCPTs
// or the message (4xx/5xx), die in the middle of DATA, or never answer the end of data.
// Also: a port nobody listens on (upstream down) and a TCP server that never greets (upstream timeout).
// Everything binds 127.0.0.1 port 0; every wait is bounded.
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { SMTPServer, type SMTPServerSession } from 'smtp-server';

export interface SinkMessage {
  readonly from: string;
  readonly to: string[];
  readonly data: Buffer;
  readonly xforward: Record<string, string | number | false>;
  readonly queueId: string;
  readonly secure: boolean;
  readonly user: string | undefined;
}

export type SinkMode =
  /** accept every message, answering after delayMs (default at once) */
  | { kind: 'accept'; delayMs?: number }
  /** refuse MAIL FROM */
  | { kind: 'reject-mail'; code: number; text: string }
  /** refuse the recipients for which `refuse` returns a reply ("550 5.1.1 ...") */
  | { kind: 'reject-rcpt'; refuse: (rcpt: string) => { code: number; text: string } | undefined }
  /** read the whole message, then answer this */
  | { kind: 'reject-data'; code: number; text: string }
  /** destroy the connection as soon as the first DATA bytes arrive */
  | { kind: 'die-mid-data' }
  /** read the whole message and never answer */
  | { kind: 'stall-data' };

export interface SinkOptions {
  xforward?: boolean;
  /** 'starttls' offers STARTTLS, 'tls' is implicit TLS; both need key and cert */
  tls?: 'none' | 'starttls' | 'tls';
  key?: Buffer;
  cert?: Buffer;
  /** require AUTH with these credentials */
  auth?: { user: string; pass: string };
  host?: string;
}

export interface Sink {
  readonly host: string;
  readonly port: number;
  readonly messages: SinkMessage[];
  mode: SinkMode;
  /** sessions that sent XFORWARD, MAIL or DATA (connection count for pool tests) */
  connections: number;
  /** resolves with the messages once there are at least n, or rejects after timeoutMs */
  waitFor(n: number, timeoutMs?: number): Promise<SinkMessage[]>;
  close(): Promise<void>;
}

function err(code: number, text: string): Error & { responseCode: number } {
  const e = new Error(text) as Error & { responseCode: number };
  e.responseCode = code;
  return e;
}

export async function startSink(opts: SinkOptions = {}): Promise<Sink> {
  const messages: SinkMessage[] = [];
  const waiters: Array<() => void> = [];
  const tlsMode = opts.tls ?? 'none';
  const sink: Sink = {
    host: opts.host ?? '127.0.0.1',
    port: 0,
    messages,
    mode: { kind: 'accept' },
    connections: 0,
    waitFor(n, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (messages.length >= n) {
            clearTimeout(timer);
            resolve(messages);
            return true;
          }
          return false;
        };
        const timer = setTimeout(() => reject(new Error(`sink: ${messages.length} of ${n} message(s) after ${timeoutMs} ms`)), timeoutMs);
        if (!check()) waiters.push(() => void check());
      });
    },
    close: async () => undefined,
  };
  const server: SMTPServer = new SMTPServer({
    name: 'sink.test',
    logger: false,
    disableReverseLookup: true,
    hideENHANCEDSTATUSCODES: true,
    useXForward: opts.xforward === true,
    secure: tlsMode === 'tls',
    ...(tlsMode === 'none' ? { disabledCommands: ['STARTTLS', ...(opts.auth ? [] : ['AUTH'])] } : opts.auth ? {} : { disabledCommands: ['AUTH'] }),
    ...(opts.key && opts.cert ? { key: opts.key, cert: opts.cert } : {}),
    authOptional: opts.auth === undefined,
    allowInsecureAuth: true,
    onConnect(_session, cb) {
      sink.connections++;
      cb();
    },
    onAuth(auth, _session, cb) {
      if (opts.auth && auth.username === opts.auth.user && auth.password === opts.auth.pass) cb(null, { user: auth.username });
      else cb(null, { message: '5.7.8 authentication failed', responseCode: 535 });
    },
    onMailFrom(_address, _session, cb) {
      const m = sink.mode;
      if (m.kind === 'reject-mail') return cb(err(m.code, m.text));
      cb();
    },
    onRcptTo(address, _session, cb) {
      const m = sink.mode;
      if (m.kind === 'reject-rcpt') {
        const r = m.refuse(address.address);
        if (r) return cb(err(r.code, r.text));
      }
      cb();
    },
    onData(stream, session, cb) {
      const m = sink.mode;
      const chunks: Buffer[] = [];
      if (m.kind === 'die-mid-data') {
        stream.once('data', () => {
          for (const c of server.connections) if (c.session === session) c._socket.destroy();
        });
        stream.on('error', () => undefined);
        stream.resume();
        return;
      }
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        if (m.kind === 'stall-data') return; // never answers
        if (m.kind === 'reject-data') return cb(err(m.code, m.text));
        const queueId = randomBytes(4).toString('hex').toUpperCase();
        messages.push(record(session, Buffer.concat(chunks), queueId));
        const answer = () => {
          cb(null, `2.0.0 Ok: queued as ${queueId}`);
          for (const w of waiters.splice(0)) w();
        };
        if (m.kind === 'accept' && m.delayMs) setTimeout(answer, m.delayMs);
        else answer();
      });
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(0, sink.host, () => resolve());
  });
  const addr = server.server.address() as net.AddressInfo;
  (sink as { port: number }).port = addr.port;
  sink.close = () =>
    new Promise<void>((resolve) => {
      server.options.closeTimeout = 100;
      for (const c of server.connections) c._socket.destroy();
      server.close(() => resolve());
    });
  return sink;
}

function record(session: SMTPServerSession, data: Buffer, queueId: string): SinkMessage {
  const xf: Record<string, string | number | false> = {};
  for (const [k, v] of session.xForward) xf[k] = v;
  const mf = session.envelope.mailFrom;
  return {
    from: mf ? mf.address : '',
    to: session.envelope.rcptTo.map((r) => r.address),
    data,
    xforward: xf,
    queueId,
    secure: session.secure,
    user: typeof session.user === 'string' ? session.user : undefined,
  };
}

/** A loopback port with nothing listening on it (connection refused). */
export async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A TCP server that accepts and never says anything (an upstream that hangs before its greeting). */
export async function silentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const s = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('error', () => undefined);
    sock.on('close', () => sockets.delete(sock));
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return {
    port: (s.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        for (const k of sockets) k.destroy();
        s.close(() => r());
      }),
  };
}
