// Small pieces every SASL backend shares: the deadline around one authentication, socket endpoint parsing
// (validated when the backend is built, so a typo is a start-up error), and the credential sanity checks.
//
// Security: withDeadline() is the last line of "never success by accident": a rejection or a deadline
// becomes `tempfail`, and only a result the backend produced itself can be `ok`.

import { isIP } from 'node:net';
import { isAbsolute } from 'node:path';
import { RelaygateError } from '../errors.ts';
import { tempfail, type AuthResult } from './types.ts';

/**
 * Longest username or password relaygate hands to a backend. Real ones are far shorter; the bound keeps a
 * Dovecot AUTH line (base64 of both) well under Dovecot's line limit, and saslauthd's 16-bit lengths safe.
 */
export const MAX_CREDENTIAL_BYTES = 1024;

/**
 * Runs `work` with a deadline. A late answer is ignored (the promise is settled once); a throw, a rejection
 * or the deadline give `tempfail`.
 */
export function withDeadline(work: () => Promise<AuthResult>, timeoutMs: number, what: string): Promise<AuthResult> {
  return new Promise<AuthResult>((resolve) => {
    let settled = false;
    const done = (r: AuthResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    const timer = setTimeout(() => done(tempfail(`${what} timed out after ${timeoutMs} ms`)), timeoutMs);
    let p: Promise<AuthResult>;
    try {
      p = work();
    } catch (e) {
      done(tempfail(`${what} failed: ${errorText(e)}`));
      return;
    }
    p.then(done, (e: unknown) => done(tempfail(`${what} failed: ${errorText(e)}`)));
  });
}

export function errorText(e: unknown): string {
  if (e instanceof Error) return (e as NodeJS.ErrnoException).code ? `${(e as NodeJS.ErrnoException).code}: ${e.message}` : e.message;
  return String(e);
}

/** Credentials no backend should see: empty username, NUL or other control characters, oversized. */
export function credentialProblem(username: string, password: string | undefined): string | undefined {
  if (username.length === 0) return 'empty username';
  if (/[\x00-\x1f\x7f]/.test(username)) return 'control character in username';
  if (Buffer.byteLength(username) > MAX_CREDENTIAL_BYTES) return 'username too long';
  if (password !== undefined) {
    if (password.includes('\0')) return 'NUL in password';
    if (Buffer.byteLength(password) > MAX_CREDENTIAL_BYTES) return 'password too long';
  }
  return undefined;
}

export type Endpoint = { readonly kind: 'unix'; readonly path: string } | { readonly kind: 'tcp'; readonly host: string; readonly port: number };

/**
 * `/absolute/socket/path`, `host:port` or `[v6]:port` (hosts must be IP literals: relaygate does no DNS
 * for its own backends). Throws RG_ERR_AUTH_BACKEND naming `what`.
 */
export function parseEndpoint(text: string, what: string, allowTcp: boolean): Endpoint {
  const bad = (why: string): never => {
    throw new RelaygateError('RG_ERR_AUTH_BACKEND', `${what}: invalid path ${JSON.stringify(text)}: ${why}`);
  };
  if (typeof text !== 'string' || text.trim() === '') return bad('empty');
  if (text.startsWith('/')) {
    if (!isAbsolute(text) || text.includes('\0')) bad('not an absolute path');
    // sun_path holds 108 bytes including the NUL on Linux
    if (Buffer.byteLength(text) > 107) bad('unix socket paths are limited to 107 bytes');
    return { kind: 'unix', path: text };
  }
  if (!allowTcp) return bad('expected the absolute path of a unix socket');
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(text);
  if (!m) return bad('expected an absolute unix socket path, IPv4:port or [IPv6]:port');
  const host = m[1] ?? m[2]!;
  const port = Number(m[3]);
  if (isIP(host) === 0) bad('the host must be an IP address literal');
  if (port < 1 || port > 65535) bad('port out of range');
  return { kind: 'tcp', host, port };
}

export function endpointText(e: Endpoint): string {
  return e.kind === 'unix' ? e.path : e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}
