// Raw-socket clients and fixtures for the policy and socketmap protocol tests: exact bytes out (including
// junk real Postfix never sends), whole replies in, every wait bounded. Loopback / unix sockets only.
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../../src/log/logger.ts';
import type { Grant } from '../../../src/store/types.ts';
import type { GrantLookup } from '../../../src/engine/index.ts';

const FIXTURES = join(import.meta.dirname, '../../fixtures/postfix');

/** A captured Postfix 3.7.11 request (exact bytes), with attributes replaced/added as given. */
export function fixtureRequest(name: 'rcpt' | 'sasl' | 'ipv6' | 'end-of-message', set: Record<string, string> = {}): string {
  const text = readFileSync(join(FIXTURES, `policy-request-${name}.txt`), 'latin1');
  const lines = text.split('\n').filter((l) => l !== '');
  const seen = new Set<string>();
  const out = lines.map((l) => {
    const k = l.slice(0, l.indexOf('='));
    if (Object.hasOwn(set, k)) {
      seen.add(k);
      return `${k}=${set[k]}`;
    }
    return l;
  });
  for (const [k, v] of Object.entries(set)) if (!seen.has(k)) out.push(`${k}=${v}`);
  return out.join('\n') + '\n\n';
}

/** A raw client that keeps what it read; read helpers wait (bounded) for whole replies. */
export class RawClient {
  buf = Buffer.alloc(0);
  closed = false;
  private waiters: Array<() => void> = [];
  private constructor(readonly sock: net.Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
    sock.on('error', () => undefined);
  }

  static connect(opts: { port?: number; host?: string; path?: string; localAddress?: string }): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = opts.path !== undefined ? net.connect({ path: opts.path }) : net.connect({ host: opts.host ?? '127.0.0.1', port: opts.port!, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error('connect timed out'));
      }, 3000);
      s.once('connect', () => {
        clearTimeout(timer);
        resolve(new RawClient(s));
      });
      s.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  write(data: string | Buffer): void {
    this.sock.write(data);
  }

  /** waits until `pred(buf)` holds or the socket closed, at most timeoutMs */
  async until(pred: (b: Buffer) => boolean, timeoutMs = 3000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; i < 10_000; i++) {
      if (pred(this.buf)) return true;
      if (this.closed) return pred(this.buf);
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return false;
  }

  /** the next `action=...\n\n` reply (consumed), or throws */
  async policyReply(timeoutMs = 3000): Promise<string> {
    const ok = await this.until((b) => b.indexOf('\n\n') !== -1, timeoutMs);
    const at = this.buf.indexOf('\n\n');
    if (!ok || at === -1) throw new Error(`no policy reply (closed=${this.closed}, have ${JSON.stringify(this.buf.toString())})`);
    const text = this.buf.subarray(0, at).toString('utf8');
    this.buf = this.buf.subarray(at + 2);
    if (!text.startsWith('action=')) throw new Error(`not a policy reply: ${JSON.stringify(text)}`);
    return text.slice('action='.length);
  }

  /** the next netstring payload (consumed), or throws */
  async netstring(timeoutMs = 3000): Promise<string> {
    const complete = (b: Buffer) => {
      const c = b.indexOf(':');
      if (c === -1) return false;
      const n = Number(b.subarray(0, c).toString());
      return b.length >= c + 1 + n + 1;
    };
    const ok = await this.until(complete, timeoutMs);
    if (!ok) throw new Error(`no netstring (closed=${this.closed}, have ${JSON.stringify(this.buf.toString())})`);
    const c = this.buf.indexOf(':');
    const n = Number(this.buf.subarray(0, c).toString());
    const payload = this.buf.subarray(c + 1, c + 1 + n).toString('utf8');
    if (this.buf[c + 1 + n] !== 44) throw new Error('netstring reply without comma');
    this.buf = this.buf.subarray(c + 2 + n);
    return payload;
  }

  /** true when the server closed the connection within timeoutMs */
  async waitClosed(timeoutMs = 3000): Promise<boolean> {
    await this.until(() => false, timeoutMs);
    return this.closed;
  }

  close(): void {
    this.sock.destroy();
  }
}

/** Grants held in memory; `failing` makes every lookup throw (a broken store). */
export class MemoryGrants implements GrantLookup {
  readonly grants = new Map<string, Grant>();
  failing = false;
  lookups = 0;

  add(ip: string, user: string | null, expires = Date.now() + 600_000): void {
    this.grants.set(ip, { ip, user, service: 'pop3', source: 'dovecot:/var/log/mail.log', firstSeen: Date.now(), lastSeen: Date.now(), expires, count: 1 });
  }

  async lookup(ip: string, now: number): Promise<Grant | undefined> {
    this.lookups++;
    if (this.failing) throw new Error('MDB_PANIC: simulated store failure');
    const g = this.grants.get(ip);
    return g !== undefined && g.expires > now ? g : undefined;
  }
}

/** A logger whose JSON lines are kept for assertions. */
export function captureLogger(level: 'debug' | 'info' = 'debug'): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: createLogger({ level, destination: sink }), lines };
}

/** Waits (bounded) for a log line with this event. */
export async function waitEvent(lines: Array<Record<string, unknown>>, event: string, timeoutMs = 3000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
    const hit = lines.find((l) => l['event'] === event);
    if (hit) return hit;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no log event ${event}; have: ${lines.map((l) => String(l['event'] ?? l['msg'])).join(', ')}`);
}
