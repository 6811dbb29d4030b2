// The contract between the SMTP AUTH front end and the SASL backends (passwd-file, Dovecot auth, saslauthd).
//
// The front end (smtp-server's onAuth) turns one AUTH exchange into an AuthRequest and maps the AuthResult
// to a reply: ok → 235 2.7.0, fail → 535 5.7.8, tempfail → 454 4.7.0 Temporary authentication failure.
//
// Security: an AuthRequest carries a cleartext password; it must never reach a logger. Backends log only
// `user`, `client_ip`, `mechanism`, `backend` and a reason; none of those field names is one pino redacts,
// so nothing secret may be put into them. A backend that is down, slow or confused answers `tempfail`,
// never `ok`: authenticate() never throws and never resolves `ok` without a positive answer from the backend.

export type Mechanism = 'PLAIN' | 'LOGIN' | 'CRAM-MD5';

export interface AuthRequest {
  readonly mechanism: Mechanism;
  /** authentication identity as the client typed it (smtp-server has already refused control characters) */
  readonly username: string;
  /** PLAIN and LOGIN */
  readonly password?: string;
  /** CRAM-MD5: the challenge the server sent (without base64), e.g. `<1896.697170952@host>` */
  readonly challenge?: string;
  /** CRAM-MD5: the client's HMAC-MD5 digest in lower- or upper-case hex */
  readonly digest?: string;
  /** client address, already through normalizeIp() */
  readonly clientIp: string;
  /** our address of the connection (Dovecot `lip=`) */
  readonly localIp?: string;
  /** the SMTP session is TLS-protected or on loopback (Dovecot `secured`) */
  readonly secured: boolean;
}

export type AuthResult =
  | { readonly outcome: 'ok'; readonly user: string }
  | { readonly outcome: 'fail'; readonly reason: string }
  | { readonly outcome: 'tempfail'; readonly reason: string };

export interface SaslBackend {
  /** registry name: `passwd-file`, `dovecot`, `saslauthd` */
  readonly name: string;
  /**
   * The backend can verify CRAM-MD5 for at least some users, so the front end may advertise it
   * ("CRAM-MD5 only when the backend holds cleartext"). passwd-file also answers per user: canCramMd5().
   */
  readonly supportsCramMd5: boolean;
  /** Never throws. Failures of the backend itself (down, timeout, garbage) are `tempfail`. */
  authenticate(req: AuthRequest): Promise<AuthResult>;
  /** Releases sockets, watchers, timers and worker threads; later authenticate() calls answer tempfail. */
  /** re-reads what the backend reads from files (SIGHUP); resolves false when that failed (the old data stays) */
  reload?(): Promise<boolean>;
  close(): Promise<void>;
}

export const ok = (user: string): AuthResult => ({ outcome: 'ok', user });
export const fail = (reason: string): AuthResult => ({ outcome: 'fail', reason });
export const tempfail = (reason: string): AuthResult => ({ outcome: 'tempfail', reason });

/**
 * SMTP replies for each result, in Postfix's wording (smtpd_sasl_glue.c), for the front end:
 * ok → 235, fail → 535, tempfail → 454 (never 535: the client should retry, not give up on the password),
 * a throttle lockout → 421 and disconnect.
 */
export const AUTH_REPLIES = Object.freeze({
  ok: { code: 235, text: '2.7.0 Authentication successful' },
  fail: { code: 535, text: '5.7.8 Error: authentication failed: authentication failure' },
  tempfail: { code: 454, text: '4.7.0 Temporary authentication failure' },
  lockout: { code: 421, text: '4.7.0 Error: too many failed authentication attempts, try again later' },
} as const);
