// SASL backend `saslauthd`: Cyrus saslauthd's mux protocol over its unix socket (`saslauthd -m DIR` listens
// on DIR/mux; Debian: /var/run/saslauthd/mux; Postfix-with-Cyrus setups point `saslauthd_path` at it).
//
// Protocol (shared/reference/protocols.md §6, Cyrus lib/checkpw.c saslauthd_verify_password): one exchange
// per connection. Request = four fields, each a 16-bit big-endian length and the bytes, no NUL: login,
// password, service, realm (empty realm = 00 00). Reply = 16-bit length + text starting `OK` or `NO <reason>`;
// the server then closes. Capture: test/fixtures/auth/saslauthd-wire.txt.
//
// Realm: `realm` (Postfix's smtpd_sasl_local_domain) is sent as is; with `splitRealm`, a username
// `user@domain` with no configured realm goes out as login `user`, realm `domain` (what sasldb stores as
// user@realm). saslauthd's own behaviour decides the rest: with an empty realm its sasldb mechanism uses the
// host name, shadow/PAM ignore the realm unless saslauthd runs with -r.
//
// Security: the password is written to the socket and nowhere else. A missing socket, a refused or reset
// connection, a short or garbled reply, or the deadline give tempfail; only a reply starting `OK` is
// success. saslauthd answers `NO` for its own internal errors as well, so those surface as ordinary
// failures: the mux protocol has no way to tell them apart. Reply lengths are capped (1 KiB, as libsasl does).

import net from 'node:net';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log/logger.ts';
import type { Clock } from '../clock.ts';
import { RelaygateError } from '../errors.ts';
import { credentialProblem, errorText, parseEndpoint } from './common.ts';
import { fail, ok, tempfail, type AuthRequest, type AuthResult, type SaslBackend } from './types.ts';

export interface SaslauthdOptions {
  /** the mux socket, or the directory given to `saslauthd -m` (then DIR/mux) */
  readonly path: string;
  readonly timeoutMs: number;
  /** service name saslauthd sees (PAM service, log); default smtp */
  readonly service?: string;
  /** realm sent with every request (default empty) */
  readonly realm?: string;
  /** split `user@domain` into login and realm when no realm is configured (default false) */
  readonly splitRealm?: boolean;
  readonly logger: Logger;
  readonly clock: Clock;
}

const MAX_REPLY = 1024;

/** The request bytes for one check: four length-prefixed fields. */
export function encodeSaslauthdRequest(login: string, password: string, service: string, realm: string): Buffer {
  const parts: Buffer[] = [];
  for (const v of [login, password, service, realm]) {
    const b = Buffer.from(v, 'utf8');
    if (b.length > 0xffff) throw new RangeError('saslauthd field longer than 65535 bytes');
    const len = Buffer.alloc(2);
    len.writeUInt16BE(b.length);
    parts.push(len, b);
  }
  return Buffer.concat(parts);
}

export class SaslauthdBackend implements SaslBackend {
  readonly name = 'saslauthd';
  /** saslauthd checks cleartext passwords only */
  readonly supportsCramMd5 = false;
  readonly socketPath: string;
  private readonly o: SaslauthdOptions;
  private readonly service: string;
  private readonly open = new Set<net.Socket>();
  private closed = false;

  private constructor(opts: SaslauthdOptions, socketPath: string) {
    this.o = opts;
    this.socketPath = socketPath;
    this.service = opts.service ?? 'smtp';
  }

  /** Validates the options; a socket that does not exist yet is only a warning (saslauthd may start later). */
  static async open(opts: SaslauthdOptions): Promise<SaslauthdBackend> {
    const ep = parseEndpoint(opts.path, 'saslauthd', false);
    let path = ep.kind === 'unix' ? ep.path : opts.path;
    const service = opts.service ?? 'smtp';
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(service)) {
      throw new RelaygateError('RG_ERR_AUTH_BACKEND', `saslauthd: invalid service name ${JSON.stringify(service)}`);
    }
    if (opts.realm !== undefined && (/[\x00-\x1f\x7f]/.test(opts.realm) || opts.realm.length > 255)) {
      throw new RelaygateError('RG_ERR_AUTH_BACKEND', 'saslauthd: invalid realm');
    }
    try {
      const st = await stat(path);
      if (st.isDirectory()) path = join(path, 'mux');
      else if (!st.isSocket()) throw new RelaygateError('RG_ERR_AUTH_BACKEND', `saslauthd: ${path} is not a unix socket`);
    } catch (e) {
      if (e instanceof RelaygateError) throw e;
      opts.logger.warn({ backend: 'saslauthd', path, err_text: errorText(e) }, `saslauthd: ${path} not there yet; AUTH answers 454 4.7.0 until saslauthd runs`);
    }
    return new SaslauthdBackend(opts, path);
  }

  authenticate(req: AuthRequest): Promise<AuthResult> {
    if (this.closed) return Promise.resolve(tempfail('saslauthd backend closed'));
    const bad = credentialProblem(req.username, req.password);
    if (bad) return Promise.resolve(fail(bad));
    if (req.mechanism === 'CRAM-MD5') return Promise.resolve(fail('CRAM-MD5 is not available through saslauthd'));
    if (req.password === undefined) return Promise.resolve(fail('no password given'));
    let login = req.username;
    let realm = this.o.realm ?? '';
    if (realm === '' && this.o.splitRealm) {
      const at = login.lastIndexOf('@');
      if (at > 0 && at < login.length - 1) {
        realm = login.slice(at + 1);
        login = login.slice(0, at);
      }
    }
    const request = encodeSaslauthdRequest(login, req.password, this.service, realm);
    return this.exchange(request, req.username);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.open) s.destroy();
    this.open.clear();
  }

  private exchange(request: Buffer, user: string): Promise<AuthResult> {
    return new Promise<AuthResult>((resolve) => {
      let settled = false;
      let got = Buffer.alloc(0);
      const s = net.createConnection({ path: this.socketPath });
      this.open.add(s);
      const done = (r: AuthResult): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.open.delete(s);
        s.destroy();
        resolve(r);
      };
      const timer = setTimeout(() => done(tempfail(`saslauthd timed out after ${this.o.timeoutMs} ms`)), this.o.timeoutMs);
      s.on('connect', () => s.write(request));
      s.on('data', (d: Buffer) => {
        got = Buffer.concat([got, d]);
        if (got.length < 2) return;
        const len = got.readUInt16BE(0);
        if (len < 2 || len > MAX_REPLY) {
          done(tempfail(`saslauthd sent a reply of ${len} bytes`));
          return;
        }
        if (got.length < 2 + len) return;
        const text = got.subarray(2, 2 + len).toString('utf8');
        if (text.startsWith('OK')) done(ok(user));
        else if (text.startsWith('NO')) done(fail(`saslauthd: ${text.slice(0, 200)}`));
        else done(tempfail('saslauthd sent an unexpected reply'));
      });
      s.on('error', (e) => done(tempfail(`saslauthd ${this.socketPath} unavailable: ${errorText(e)}`)));
      s.on('close', () => done(tempfail('saslauthd closed the connection without a complete reply')));
    });
  }
}
