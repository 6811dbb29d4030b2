// A raw SMTP client for the gateway tests: exact bytes out (bare LF, bare CR, 100 KB lines, half-finished
// AUTH exchanges — things real clients refuse to send), whole replies in. `localAddress` picks the source
// address, so each 127.x.y.z is a different client to the gateway. connect() checks the 220 greeting before
// anything is sent; every read is bounded by `timeoutMs`.
import net from 'node:net';
import tls from 'node:tls';

export interface Reply {
  readonly code: number;
  /** the text of each line, without `250-` / `250 ` */
  readonly lines: string[];
  /** lines joined with a space */
  readonly text: string;
  /** the reply as received, lines joined with \n */
  readonly raw: string;
}

export interface ClientOptions {
  host?: string;
  port: number;
  localAddress?: string;
  timeoutMs?: number;
  /** implicit TLS (submissions) */
  tls?: boolean;
  /** check the greeting against this (default /^220 /) */
  expectGreeting?: RegExp;
}

export class SmtpClient {
  greeting!: Reply;
  #sock: net.Socket | tls.TLSSocket;
  #buf = '';
  #waiters: Array<() => void> = [];
  #closed = false;
  readonly timeoutMs: number;
  readonly host: string;

  private constructor(sock: net.Socket | tls.TLSSocket, timeoutMs: number, host: string) {
    this.#sock = sock;
    this.timeoutMs = timeoutMs;
    this.host = host;
    this.#attach(sock);
  }

  static async connect(o: ClientOptions): Promise<SmtpClient> {
    const host = o.host ?? '127.0.0.1';
    const timeoutMs = o.timeoutMs ?? 5000;
    const sock = await new Promise<net.Socket | tls.TLSSocket>((resolve, reject) => {
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error(`connect to ${host}:${o.port} timed out`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve(s);
      };
      const s: net.Socket | tls.TLSSocket = o.tls
        ? tls.connect({ host, port: o.port, ...(o.localAddress ? { localAddress: o.localAddress } : {}), rejectUnauthorized: false }, done)
        : net.connect({ host, port: o.port, ...(o.localAddress ? { localAddress: o.localAddress } : {}) }, done);
      s.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    const c = new SmtpClient(sock, timeoutMs, host);
    c.greeting = await c.read();
    const want = o.expectGreeting ?? /^220 /;
    if (!want.test(c.greeting.raw)) {
      c.destroy();
      throw new Error(`unexpected greeting: ${c.greeting.raw}`);
    }
    return c;
  }

  #attach(sock: net.Socket | tls.TLSSocket): void {
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      this.#buf += d;
      this.#wake();
    });
    sock.on('error', () => undefined);
    sock.on('close', () => {
      this.#closed = true;
      this.#wake();
    });
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Next complete reply; rejects on timeout or when the server closes without one. */
  async read(timeoutMs = this.timeoutMs): Promise<Reply> {
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; i < 100_000; i++) {
      const r = this.#take();
      if (r) return r;
      if (this.#closed) throw new Error(`connection closed (pending: ${JSON.stringify(this.#buf.slice(0, 200))})`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no reply within ${timeoutMs} ms (pending: ${JSON.stringify(this.#buf.slice(0, 200))})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    throw new Error('read: too many iterations');
  }

  #take(): Reply | undefined {
    const lines: string[] = [];
    let pos = 0;
    for (;;) {
      const nl = this.#buf.indexOf('\n', pos);
      if (nl === -1) return undefined;
      const line = this.#buf.slice(pos, nl).replace(/\r$/, '');
      pos = nl + 1;
      lines.push(line);
      if (!/^\d{3}-/.test(line)) break;
    }
    this.#buf = this.#buf.slice(pos);
    const code = Number(lines[0]!.slice(0, 3));
    const texts = lines.map((l) => l.slice(4));
    return { code, lines: texts, text: texts.join(' '), raw: lines.join('\n') };
  }

  /** Writes exactly these bytes. */
  write(data: string | Buffer): void {
    this.#sock.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  /** Sends `line` + CRLF and reads the reply. */
  async cmd(line: string, timeoutMs?: number): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.read(timeoutMs);
  }

  /** STARTTLS, then a new EHLO is up to the caller. */
  async starttls(): Promise<Reply> {
    const r = await this.cmd('STARTTLS');
    if (r.code !== 220) return r;
    const plain = this.#sock as net.Socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('TLS handshake timed out')), this.timeoutMs);
      const s = tls.connect({ socket: plain, rejectUnauthorized: false, servername: 'localhost' }, () => {
        clearTimeout(t);
        resolve(s);
      });
      s.once('error', (e) => {
        clearTimeout(t);
        reject(e);
      });
    });
    this.#sock = secure;
    this.#buf = '';
    this.#attach(secure);
    return r;
  }

  get secure(): boolean {
    return this.#sock instanceof tls.TLSSocket;
  }

  /** SHA-256 fingerprint of the server certificate (TLS sessions only). */
  peerFingerprint(): string | undefined {
    return this.#sock instanceof tls.TLSSocket ? this.#sock.getPeerCertificate().fingerprint256 : undefined;
  }

  /** Resolves true when the server closes the connection within timeoutMs. */
  async waitClosed(timeoutMs = this.timeoutMs): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; i < 10_000 && !this.#closed && Date.now() < deadline; i++) await new Promise((r) => setTimeout(r, 10));
    return this.#closed;
  }

  async quit(): Promise<void> {
    if (!this.#closed) {
      try {
        await this.cmd('QUIT', 2000);
      } catch {
        // already gone
      }
    }
    this.destroy();
  }

  destroy(): void {
    this.#sock.destroy();
  }
}

/** AUTH PLAIN initial response for authzid, authcid, password. */
export function plain(authzid: string, authcid: string, pass: string): string {
  return Buffer.from(`${authzid}\0${authcid}\0${pass}`, 'utf8').toString('base64');
}

export function b64(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64');
}
