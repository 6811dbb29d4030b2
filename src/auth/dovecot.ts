// SASL backend `dovecot`: Dovecot's auth-client protocol (what Postfix's `smtpd_sasl_type = dovecot` speaks),
// over a unix socket (`service auth { unix_listener ... }`) or TCP (`inet_listener`, `host:port`).
//
// Protocol (shared/reference/protocols.md §5, Dovecot src/lib-auth/auth-client-connection.c), tab-separated,
// LF-terminated:
//   C: VERSION 1 0 / CPID <pid>           S: VERSION 1 x / MECH <name> <flags>... / SPID / CUID / COOKIE / DONE
//   C: AUTH <id> PLAIN service=smtp nologin [lip=] rip=<client> [secured] resp=<base64 \0user\0pass>
//   S: OK <id> user=<name> | FAIL <id> [user=] [code=temp_fail|...] [temp] [reason=] | CONT <id> <base64>
// One persistent connection carries many requests at once, matched by id. PLAIN is re-encoded as
// `\0user\0pass` (empty authzid: Dovecot refuses smtp-server's `user\0\0pass` form). LOGIN is sent as PLAIN
// (the front end already has both strings); only when Dovecot lists LOGIN but not PLAIN is the LOGIN
// exchange done (two CONT rounds). A mechanism Dovecot did not list is never sent: Dovecot drops the whole
// connection for that ("BUG: ... requested unsupported authentication mechanism").
//
// CRAM-MD5 is not offered through this backend: Dovecot's CRAM-MD5 issues its *own* challenge, while
// smtp-server has already sent the client a challenge of its own before calling the backend, so the
// client's digest can never match what Dovecot checks. `supportsCramMd5` is therefore false.
//
// Failure handling: `code=temp_fail` (or the older `temp` flag) → tempfail (454 4.7.0), any other FAIL →
// fail. A lost connection fails every request in flight as tempfail and reconnects in the background with
// exponential back-off (100 ms doubling to 5 s by default); while the last attempt failed and the back-off
// has not elapsed, requests answer tempfail at once instead of waiting. A request that outlives `timeoutMs`
// answers tempfail; Dovecot's late answer to its id is ignored (ids are never reused on a connection).
//
// Security: the client IP goes out as `rip=` (normalized; omitted when it is not an IP) so Dovecot's failure
// penalty and log work per client. Nothing the client typed is put on the wire unencoded: credentials
// travel only inside base64. Incoming lines are bounded (64 KiB without a newline closes the connection);
// an answer with an id we are not waiting for is ignored, never applied to another request.

import net from 'node:net';
import { normalizeIp } from '../net/index.ts';
import { RelaygateError } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import type { Clock } from '../clock.ts';
import { credentialProblem, endpointText, errorText, parseEndpoint, type Endpoint } from './common.ts';
import { fail, ok, tempfail, type AuthRequest, type AuthResult, type SaslBackend } from './types.ts';

export interface DovecotOptions {
  /** absolute unix socket path, `ip:port` or `[ipv6]:port` */
  readonly path: string;
  readonly timeoutMs: number;
  /** `service=` sent to Dovecot (what its `protocol` filters and logs see); default smtp */
  readonly service?: string;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly backoffMinMs?: number;
  readonly backoffMaxMs?: number;
}

const MAX_LINE = 65536;

interface Pending {
  readonly req: AuthRequest;
  id: number;
  /** LOGIN exchange: CONT answers sent so far */
  step: number;
  mech: 'PLAIN' | 'LOGIN';
  done: boolean;
  timer: NodeJS.Timeout;
  resolve(r: AuthResult): void;
}

type State = 'idle' | 'connecting' | 'ready' | 'down' | 'closed';

/** Dovecot's str_tabunescape(): \x01 followed by 1, t, r, n (0 for NUL in newer versions). */
export function tabUnescape(s: string): string {
  if (!s.includes('\x01')) return s;
  return s.replace(/\x01(.)/g, (_m, c: string) => ({ '1': '\x01', t: '\t', r: '\r', n: '\n', '0': '\0' })[c] ?? c);
}

export class DovecotAuthBackend implements SaslBackend {
  readonly name = 'dovecot';
  /** see the header: Dovecot's CRAM-MD5 challenge cannot be the one smtp-server sent */
  readonly supportsCramMd5 = false;
  readonly endpoint: Endpoint;
  private readonly service: string;
  private readonly o: DovecotOptions;
  private readonly backoffMin: number;
  private readonly backoffMax: number;

  private state: State = 'idle';
  private sock: net.Socket | undefined;
  private buf = '';
  private handshake: { version: boolean; mechs: Set<string> } = { version: false, mechs: new Set() };
  private mechs: ReadonlySet<string> = new Set();
  private readonly pending = new Map<number, Pending>();
  private queue: Pending[] = [];
  private nextId = 1;
  private backoff: number;
  private nextAttemptAt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private lastError = 'not connected yet';
  private outageLogged = false;
  private connects = 0;

  constructor(opts: DovecotOptions) {
    this.o = opts;
    this.endpoint = parseEndpoint(opts.path, 'dovecot', true);
    this.service = opts.service ?? 'smtp';
    if (!/^[A-Za-z0-9_.-]{1,32}$/.test(this.service)) {
      throw new RelaygateError('RG_ERR_AUTH_BACKEND', `dovecot: invalid service name ${JSON.stringify(this.service)}`);
    }
    this.backoffMin = opts.backoffMinMs ?? 100;
    this.backoffMax = opts.backoffMaxMs ?? 5000;
    this.backoff = this.backoffMin;
  }

  /** Mechanisms Dovecot listed on the current connection (empty while not connected). */
  get mechanisms(): readonly string[] {
    return [...this.mechs];
  }

  get connected(): boolean {
    return this.state === 'ready';
  }

  /** Connections opened so far (one persistent connection: this grows only after a loss). */
  get connectionCount(): number {
    return this.connects;
  }

  /** Opens the connection now (otherwise the first authenticate() does); never rejects. */
  start(): void {
    if (this.state === 'idle' || (this.state === 'down' && this.reconnectTimer === undefined)) this.connect();
  }

  authenticate(req: AuthRequest): Promise<AuthResult> {
    if (this.state === 'closed') return Promise.resolve(tempfail('dovecot backend closed'));
    const bad = credentialProblem(req.username, req.password);
    if (bad) return Promise.resolve(fail(bad));
    if (req.mechanism === 'CRAM-MD5') return Promise.resolve(fail('CRAM-MD5 is not available through the dovecot backend'));
    if (req.password === undefined) return Promise.resolve(fail('no password given'));
    return new Promise<AuthResult>((resolve) => {
      const p: Pending = {
        req,
        id: 0,
        step: 0,
        mech: 'PLAIN',
        done: false,
        resolve: (r) => {
          if (p.done) return;
          p.done = true;
          clearTimeout(p.timer);
          if (p.id) this.pending.delete(p.id);
          resolve(r);
        },
        timer: setTimeout(() => p.resolve(tempfail(`dovecot auth timed out after ${this.o.timeoutMs} ms`)), this.o.timeoutMs),
      };
      this.dispatch(p);
    });
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.handshakeTimer);
    this.failAll('dovecot backend closed');
    const s = this.sock;
    this.sock = undefined;
    if (s && !s.destroyed) {
      await new Promise<void>((r) => {
        s.once('close', () => r());
        s.destroy();
      });
    }
  }

  private dispatch(p: Pending): void {
    switch (this.state) {
      case 'ready':
        this.send(p);
        return;
      case 'idle':
        this.queue.push(p);
        this.connect();
        return;
      case 'connecting':
        this.queue.push(p);
        return;
      case 'down':
        if (this.o.clock() >= this.nextAttemptAt) {
          this.queue.push(p);
          this.connect();
        } else {
          p.resolve(tempfail(`dovecot auth ${endpointText(this.endpoint)} unavailable: ${this.lastError}`));
        }
        return;
      case 'closed':
        p.resolve(tempfail('dovecot backend closed'));
    }
  }

  private send(p: Pending): void {
    if (p.done) return;
    const { req } = p;
    const mech = this.mechs.has('PLAIN') ? 'PLAIN' : this.mechs.has('LOGIN') ? 'LOGIN' : undefined;
    if (!mech) {
      this.o.logger.error({ backend: this.name, mechanisms: [...this.mechs] }, `dovecot auth ${endpointText(this.endpoint)} offers neither PLAIN nor LOGIN: add them to auth_mechanisms`);
      p.resolve(tempfail('dovecot offers neither PLAIN nor LOGIN'));
      return;
    }
    p.mech = mech;
    p.id = this.nextId++;
    if (this.nextId > 0xffffffff) this.nextId = 1;
    this.pending.set(p.id, p);
    const fields = ['AUTH', String(p.id), mech, `service=${this.service}`, 'nologin'];
    const lip = req.localIp !== undefined ? normalizeIp(req.localIp) : undefined;
    const rip = normalizeIp(req.clientIp);
    if (lip) fields.push(`lip=${lip}`);
    if (rip) fields.push(`rip=${rip}`);
    if (req.secured) fields.push('secured');
    if (mech === 'PLAIN') {
      fields.push(`resp=${Buffer.from(`\0${req.username}\0${req.password ?? ''}`, 'utf8').toString('base64')}`);
    }
    this.write(fields.join('\t') + '\n');
  }

  private write(line: string): void {
    const s = this.sock;
    if (s && !s.destroyed && s.writable) s.write(line);
  }

  private connect(): void {
    if (this.state === 'closed' || this.state === 'connecting' || this.state === 'ready') return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.state = 'connecting';
    this.connects++;
    this.buf = '';
    this.handshake = { version: false, mechs: new Set() };
    const e = this.endpoint;
    const s = e.kind === 'unix' ? net.createConnection({ path: e.path }) : net.createConnection({ host: e.host, port: e.port });
    this.sock = s;
    s.setNoDelay(true);
    this.handshakeTimer = setTimeout(() => s.destroy(new Error(`no handshake within ${this.o.timeoutMs} ms`)), this.o.timeoutMs);
    this.handshakeTimer.unref();
    s.on('connect', () => s.write(`VERSION\t1\t0\nCPID\t${process.pid}\n`));
    s.on('data', (d: Buffer) => this.onData(s, d));
    s.on('error', (err) => {
      this.lastError = errorText(err);
    });
    s.on('close', () => this.onClose(s));
  }

  private onData(s: net.Socket, d: Buffer): void {
    if (s !== this.sock) return;
    this.buf += d.toString('utf8');
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) !== -1) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      this.onLine(s, line);
      if (s.destroyed) return;
    }
    if (this.buf.length > MAX_LINE) s.destroy(new Error('line from dovecot auth too long'));
  }

  private onLine(s: net.Socket, line: string): void {
    const f = line.split('\t');
    const cmd = f[0];
    if (this.state === 'connecting') {
      if (cmd === 'VERSION') {
        if (f[1] !== '1') {
          s.destroy(new Error(`unsupported auth protocol version ${f[1] ?? '?'}.${f[2] ?? '?'}`));
          return;
        }
        this.handshake.version = true;
      } else if (cmd === 'MECH' && f[1]) {
        this.handshake.mechs.add(f[1].toUpperCase());
      } else if (cmd === 'DONE') {
        if (!this.handshake.version) {
          s.destroy(new Error('handshake without VERSION'));
          return;
        }
        this.onReady();
      }
      return; // SPID, CUID, COOKIE and anything newer
    }
    if (this.state !== 'ready') return;
    const id = Number(f[1]);
    if (cmd !== 'OK' && cmd !== 'FAIL' && cmd !== 'CONT') return;
    const p = Number.isInteger(id) ? this.pending.get(id) : undefined;
    if (!p) {
      this.o.logger.debug({ backend: this.name, id: f[1] }, `dovecot auth: ignoring ${cmd} for an id not in flight (late answer after a timeout?)`);
      return;
    }
    const params = new Map<string, string>();
    for (const kv of f.slice(2)) {
      const eq = kv.indexOf('=');
      params.set(eq === -1 ? kv : kv.slice(0, eq), eq === -1 ? '' : tabUnescape(kv.slice(eq + 1)));
    }
    if (cmd === 'OK') {
      const user = params.get('user');
      p.resolve(ok(user !== undefined && user !== '' ? user : p.req.username));
    } else if (cmd === 'FAIL') {
      const code = params.get('code');
      const reason = params.get('reason');
      if (code === 'temp_fail' || params.has('temp')) p.resolve(tempfail(`dovecot: temporary failure${reason ? `: ${reason}` : ''}`));
      else p.resolve(fail(`dovecot: ${reason ?? code ?? 'authentication failed'}`));
    } else {
      // CONT: only the LOGIN exchange expects it (Username:, then Password:)
      if (p.mech !== 'LOGIN' || p.step >= 2) {
        p.resolve(tempfail('dovecot sent an unexpected CONT'));
        return;
      }
      const value = p.step === 0 ? p.req.username : (p.req.password ?? '');
      p.step++;
      this.write(`CONT\t${p.id}\t${Buffer.from(value, 'utf8').toString('base64')}\n`);
    }
  }

  private onReady(): void {
    clearTimeout(this.handshakeTimer);
    this.state = 'ready';
    this.mechs = this.handshake.mechs;
    this.backoff = this.backoffMin;
    this.lastError = '';
    if (this.outageLogged) {
      this.o.logger.info({ backend: this.name, endpoint: endpointText(this.endpoint) }, `dovecot auth ${endpointText(this.endpoint)}: connected again`);
      this.outageLogged = false;
    } else {
      this.o.logger.debug({ backend: this.name, mechanisms: [...this.mechs] }, `dovecot auth ${endpointText(this.endpoint)}: connected`);
    }
    const q = this.queue;
    this.queue = [];
    for (const p of q) this.send(p);
  }

  private onClose(s: net.Socket): void {
    if (s !== this.sock) return;
    clearTimeout(this.handshakeTimer);
    this.sock = undefined;
    this.mechs = new Set();
    if (this.state === 'closed') return;
    const wasReady = this.state === 'ready';
    this.state = 'down';
    const why = wasReady ? `connection lost (${this.lastError || 'closed by dovecot'})` : this.lastError || 'closed during the handshake';
    if (!this.outageLogged) {
      this.o.logger.warn({ backend: this.name, endpoint: endpointText(this.endpoint), err_text: why }, `dovecot auth ${endpointText(this.endpoint)}: ${why}; answering 454 4.7.0 until it is back`);
      this.outageLogged = true;
    }
    this.lastError = why;
    this.failAll(`dovecot auth ${wasReady ? 'connection lost' : 'unreachable'}: ${why}`);
    this.nextAttemptAt = this.o.clock() + this.backoff;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.state === 'down') this.connect();
    }, this.backoff);
    this.reconnectTimer.unref();
    this.backoff = Math.min(this.backoff * 2, this.backoffMax);
  }

  private failAll(reason: string): void {
    const all = [...this.pending.values(), ...this.queue];
    this.pending.clear();
    this.queue = [];
    for (const p of all) p.resolve(tempfail(reason));
  }
}
