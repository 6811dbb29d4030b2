// The load generator of the smtp benchmark, run as a forked child of bench/smtp.ts so its CPU never shares
// an event loop with the server under test. Over IPC it receives one job at a time:
//
//   run  — `connections` SMTP clients, each sending ~1 KB messages one after another (MAIL, RCPT, DATA, body)
//          on one reused connection (after greeting, EHLO and, if asked, AUTH PLAIN), or opening a fresh
//          connection per message (`perMessage`). A warm-up, then a measured window; it reports the
//          messages whose final 250 arrived inside the window and each one's latency (reused: MAIL sent →
//          250 after the body; per message: connect → 250 after the body).
//   idle — opens `connections` connections (greeting + EHLO each) and holds them until `release`, so the
//          parent can read the server's memory with that many idle clients.
//
// The client speaks one command per round trip (no PIPELINING) against every target, so the same bytes and
// the same number of round trips go to the sink, relaygate and Haraka. Replies are parsed by ReplyReader
// (multi-line aware). Anything but the expected reply is an error: counted, its text kept (the first few),
// the connection closed and reopened. Bounded: the window and a message cap end every loop; each reply has
// a timeout; more than MAX_ERRORS errors end the run.
//
// Security: connects only to the loopback target it is given, from the loopback source addresses it is
// given (the parent checks both); it never resolves a name.

import net from 'node:net';
import { pathToFileURL } from 'node:url';

export interface LoadSpec {
  readonly host: string;
  readonly port: number;
  /** source addresses, assigned to connections round-robin (each must be a 127.x.y.z address) */
  readonly localAddresses: readonly string[];
  readonly connections: number;
  /** a new connection for every message instead of one reused connection per client */
  readonly perMessage: boolean;
  readonly warmupMs: number;
  readonly durationMs: number;
  /** hard cap on messages started, over warm-up and window together */
  readonly maxMessages: number;
  readonly auth?: { readonly user: string; readonly pass: string } | undefined;
  readonly from: string;
  readonly to: string;
  /** approximate message size in bytes */
  readonly messageBytes: number;
  readonly replyTimeoutMs: number;
}

export interface LoadResult {
  /** messages whose final 250 arrived inside the measured window */
  readonly messages: number;
  readonly windowMs: number;
  /** latency of each of those messages, ms (unsorted) */
  readonly latenciesMs: number[];
  readonly errors: number;
  /** the first few error texts */
  readonly errorSamples: string[];
  readonly connectionsOpened: number;
  /** every message the server answered 250 after the body, warm-up and window together */
  readonly acknowledged: number;
}

export interface IdleSpec {
  readonly host: string;
  readonly port: number;
  readonly localAddresses: readonly string[];
  readonly connections: number;
  readonly replyTimeoutMs: number;
  /** give up opening more after this long */
  readonly openTimeoutMs: number;
}

export type LoadRequest = { op: 'run'; spec: LoadSpec } | { op: 'idle'; spec: IdleSpec } | { op: 'release' } | { op: 'exit' };
export type LoadReply =
  | { op: 'ready' }
  | { op: 'result'; result: LoadResult }
  | { op: 'idle-ready'; opened: number; errors: number; errorSamples: string[] }
  | { op: 'released' }
  | { op: 'failed'; error: string };

const MAX_ERRORS = 200;
const MAX_SAMPLES = 5;
/** a reply longer than this is an error, not something to buffer forever */
const MAX_REPLY = 64 * 1024;

/**
 * Splits a byte stream into SMTP replies (RFC 5321 §4.2: `250-...` continues, `250 ...` or `250` ends).
 * push() returns the replies completed by this chunk, each as its lines joined by "\n".
 */
export class ReplyReader {
  #partial = '';
  #lines: string[] = [];

  push(chunk: string): string[] {
    const out: string[] = [];
    let text = this.#partial + chunk;
    if (text.length > MAX_REPLY) throw new Error(`reply longer than ${MAX_REPLY} bytes`);
    for (let guard = 0; guard < 100_000; guard++) {
      const nl = text.indexOf('\n');
      if (nl === -1) break;
      const line = text.slice(0, nl).replace(/\r$/, '');
      text = text.slice(nl + 1);
      this.#lines.push(line);
      if (!/^\d{3}-/.test(line)) {
        out.push(this.#lines.join('\n'));
        this.#lines = [];
      }
    }
    this.#partial = text;
    return out;
  }
}

/** The reply code of a reply from ReplyReader (0 when it has none). */
export function replyCode(reply: string): number {
  const m = /^(\d{3})/.exec(reply);
  return m ? Number(m[1]) : 0;
}

/** Nearest-rank percentile (p in 0..100) of an ascending array; NaN when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/**
 * A ~`bytes`-byte RFC 5322 message with CRLF line endings, no line starting with a dot, followed by the
 * end-of-data line `.` CRLF.
 */
export function buildMessage(from: string, to: string, bytes: number): Buffer {
  const head = `From: <${from}>\r\nTo: <${to}>\r\nSubject: relaygate benchmark message\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <bench@relaygate.bench>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n`;
  const line = 'The quick brown fox jumps over the lazy dog; relaygate benchmark filler text.\r\n';
  let body = '';
  for (let i = 0; head.length + body.length + line.length <= bytes && i < 10_000; i++) body += line;
  return Buffer.from(`${head}${body}.\r\n`, 'latin1');
}

/** One client connection: send a line, wait for the whole reply. */
class Client {
  readonly #sock: net.Socket;
  readonly #reader = new ReplyReader();
  readonly #replies: string[] = [];
  #waiter: ((reply: string | Error) => void) | undefined;
  #closedWith: Error | undefined;

  private constructor(sock: net.Socket) {
    this.#sock = sock;
    sock.setNoDelay(true);
    sock.setEncoding('latin1');
    sock.on('data', (chunk: string) => {
      let got: string[];
      try {
        got = this.#reader.push(chunk);
      } catch (err) {
        this.#fail(err as Error);
        return;
      }
      for (const r of got) {
        const w = this.#waiter;
        if (w !== undefined) {
          this.#waiter = undefined;
          w(r);
        } else this.#replies.push(r);
      }
    });
    sock.on('error', (err) => this.#fail(err));
    sock.on('close', () => this.#fail(new Error('connection closed by the server')));
  }

  static open(host: string, port: number, localAddress: string, timeoutMs: number): Promise<Client> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host, port, localAddress });
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error(`connect to ${host}:${port} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      sock.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      sock.once('connect', () => {
        clearTimeout(timer);
        resolve(new Client(sock));
      });
    });
  }

  #fail(err: Error): void {
    this.#closedWith ??= err;
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.(err);
  }

  /** The next reply (already received or still to come), or throws on close/timeout. */
  reply(timeoutMs: number): Promise<string> {
    const ready = this.#replies.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    if (this.#closedWith !== undefined) return Promise.reject(this.#closedWith);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiter = undefined;
        reject(new Error(`no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiter = (r) => {
        clearTimeout(timer);
        if (r instanceof Error) reject(r);
        else resolve(r);
      };
    });
  }

  /** Sends `data` (a command line with CRLF, or a message body) and expects a reply with `want`. */
  async expect(data: string | Buffer, want: number, timeoutMs: number, what: string): Promise<string> {
    this.#sock.write(data);
    const r = await this.reply(timeoutMs);
    if (replyCode(r) !== want) throw new Error(`${what}: expected ${want}, got ${JSON.stringify(r.slice(0, 200))}`);
    return r;
  }

  close(): void {
    this.#sock.destroy();
  }

  quit(): void {
    this.#sock.end('QUIT\r\n');
    setTimeout(() => this.#sock.destroy(), 200).unref();
  }
}

/** Opens a connection and brings it to "ready for MAIL": greeting, EHLO, optional AUTH PLAIN. */
async function openSession(host: string, port: number, local: string, timeoutMs: number, auth: LoadSpec['auth']): Promise<Client> {
  const c = await Client.open(host, port, local, timeoutMs);
  try {
    const greeting = await c.reply(timeoutMs);
    if (replyCode(greeting) !== 220) throw new Error(`greeting: expected 220, got ${JSON.stringify(greeting.slice(0, 200))}`);
    await c.expect('EHLO client.bench\r\n', 250, timeoutMs, 'EHLO');
    if (auth !== undefined) {
      const token = Buffer.from(`\0${auth.user}\0${auth.pass}`, 'utf8').toString('base64');
      await c.expect(`AUTH PLAIN ${token}\r\n`, 235, timeoutMs, 'AUTH PLAIN');
    }
    return c;
  } catch (err) {
    c.close();
    throw err;
  }
}

async function transaction(c: Client, spec: LoadSpec, body: Buffer): Promise<void> {
  const t = spec.replyTimeoutMs;
  await c.expect(`MAIL FROM:<${spec.from}>\r\n`, 250, t, 'MAIL');
  await c.expect(`RCPT TO:<${spec.to}>\r\n`, 250, t, 'RCPT');
  await c.expect('DATA\r\n', 354, t, 'DATA');
  await c.expect(body, 250, t, 'end of data');
}

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const body = buildMessage(spec.from, spec.to, spec.messageBytes);
  const start = performance.now();
  const windowStart = start + spec.warmupMs;
  const windowEnd = windowStart + spec.durationMs;
  const latencies: number[] = [];
  const samples: string[] = [];
  let errors = 0;
  let started = 0;
  let opened = 0;
  let acknowledged = 0;
  const error = (err: unknown): void => {
    errors++;
    if (samples.length < MAX_SAMPLES) samples.push((err as Error).message);
  };
  const more = (): boolean => performance.now() < windowEnd && started < spec.maxMessages && errors <= MAX_ERRORS;
  const record = (t0: number): void => {
    const done = performance.now();
    if (done >= windowStart && done <= windowEnd) latencies.push(done - t0);
  };

  const worker = async (k: number): Promise<void> => {
    const local = spec.localAddresses[k % spec.localAddresses.length]!;
    let c: Client | undefined;
    for (let i = 0; i < spec.maxMessages && more(); i++) {
      started++;
      const t0 = performance.now();
      try {
        if (c === undefined) {
          c = await openSession(spec.host, spec.port, local, spec.replyTimeoutMs, spec.auth);
          opened++;
        }
        const t1 = spec.perMessage ? t0 : performance.now();
        await transaction(c, spec, body);
        acknowledged++;
        record(t1);
        if (spec.perMessage) {
          c.quit();
          c = undefined;
        }
      } catch (err) {
        error(err);
        c?.close();
        c = undefined;
      }
    }
    c?.quit();
  };
  await Promise.all(Array.from({ length: spec.connections }, (_, k) => worker(k)));
  const windowMs = Math.min(performance.now(), windowEnd) - windowStart;
  return { messages: latencies.length, windowMs, latenciesMs: latencies, errors, errorSamples: samples, connectionsOpened: opened, acknowledged };
}

/** Opens `spec.connections` ready sessions (bounded in time); the caller closes them. */
export async function openIdle(spec: IdleSpec): Promise<{ clients: Client[]; errors: number; errorSamples: string[] }> {
  const clients: Client[] = [];
  const samples: string[] = [];
  let errors = 0;
  const deadline = performance.now() + spec.openTimeoutMs;
  // a few at a time, like clients arriving, and so no accept queue overflows
  const BATCH = 50;
  for (let i = 0; i < spec.connections && performance.now() < deadline && errors <= MAX_ERRORS; i += BATCH) {
    const n = Math.min(BATCH, spec.connections - i);
    const got = await Promise.allSettled(
      Array.from({ length: n }, (_, j) => openSession(spec.host, spec.port, spec.localAddresses[(i + j) % spec.localAddresses.length]!, spec.replyTimeoutMs, undefined)),
    );
    for (const g of got) {
      if (g.status === 'fulfilled') clients.push(g.value);
      else {
        errors++;
        if (samples.length < MAX_SAMPLES) samples.push((g.reason as Error).message);
      }
    }
  }
  return { clients, errors, errorSamples: samples };
}

async function childMain(): Promise<void> {
  const send = (m: LoadReply): void => void process.send?.(m);
  let idle: Client[] = [];
  process.on('message', (m: LoadRequest) => {
    void (async () => {
      try {
        if (m.op === 'run') send({ op: 'result', result: await runLoad(m.spec) });
        else if (m.op === 'idle') {
          const r = await openIdle(m.spec);
          idle = r.clients;
          send({ op: 'idle-ready', opened: r.clients.length, errors: r.errors, errorSamples: r.errorSamples });
        } else if (m.op === 'release') {
          for (const c of idle) c.close();
          idle = [];
          send({ op: 'released' });
        } else if (m.op === 'exit') process.exit(0);
      } catch (err) {
        send({ op: 'failed', error: (err as Error).message });
      }
    })();
  });
  // the parent going away (crash, ^C) must not leave the load generator behind
  process.on('disconnect', () => process.exit(0));
  send({ op: 'ready' });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  void childMain();
}
