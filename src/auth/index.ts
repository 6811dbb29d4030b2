// auth/: SASL backends for the SMTP AUTH gateway, behind one interface (types.ts), chosen in configuration
// (`[auth] backend`), plus the brute-force throttle and the Postfix-shaped SASL log lines.
//
// The registry has one row per backend, each implemented in its own file; adding a backend is a new file
// plus one row here (test/auth/index.test.ts walks the rows and demands a source file and a test for each).
// createBackend() validates the options and, for passwd-file, reads the file: a bad configuration is a
// start-up error (RG_ERR_AUTH_BACKEND), not a surprise at the first AUTH. A socket backend whose daemon is
// not running yet is not a configuration error: it answers tempfail until the daemon is there.
//
// Security: see types.ts. Backends never throw from authenticate() and never turn a failure of their own
// into success; the registry adds nothing to the credentials path.

import { RelaygateError } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import type { Clock } from '../clock.ts';
import { PasswdFileBackend } from './passwd-file.ts';
import { DovecotAuthBackend } from './dovecot.ts';
import { SaslauthdBackend } from './saslauthd.ts';
import type { SaslBackend } from './types.ts';

export type { AuthRequest, AuthResult, Mechanism, SaslBackend } from './types.ts';
export { AUTH_REPLIES } from './types.ts';
export { AuthThrottle, THROTTLE_DEFAULTS, type ThrottleOptions, type ThrottleVerdict } from './throttle.ts';
export { formatSaslFailure, formatSaslSuccess, formatSaslLockout, clientNamaddr } from './log.ts';
export { PasswdFileBackend } from './passwd-file.ts';
export { DovecotAuthBackend } from './dovecot.ts';
export { SaslauthdBackend } from './saslauthd.ts';

export type BackendName = 'passwd-file' | 'dovecot' | 'saslauthd';

export interface BackendOptions {
  readonly backend: BackendName;
  /** passwd-file: the file; dovecot: unix socket path or host:port; saslauthd: mux socket (or its directory) */
  readonly path: string;
  /** deadline of one authentication, ms */
  readonly timeoutMs: number;
  /** service name sent to dovecot / saslauthd (default smtp) */
  readonly service?: string;
  /** saslauthd realm (Postfix smtpd_sasl_local_domain) */
  readonly realm?: string;
  /** saslauthd: split user@domain into login and realm when no realm is set */
  readonly splitRealm?: boolean;
  /** passwd-file: scheme of passwords without `{SCHEME}` (default CRYPT, as Dovecot) */
  readonly defaultScheme?: string;
  readonly logger: Logger;
  readonly clock: Clock;
}

interface BackendRow {
  /** source file under src/auth/ */
  readonly file: string;
  /** one line for docs and `config show` */
  readonly doc: string;
  readonly create: (o: BackendOptions) => Promise<SaslBackend>;
}

export const BACKENDS: Readonly<Record<BackendName, BackendRow>> = {
  'passwd-file': {
    file: 'passwd-file.ts',
    doc: "Dovecot passwd-file (`user:{SCHEME}hash:...`) read by relaygate; reloaded when it changes; CRAM-MD5 for {PLAIN}/{CRAM-MD5} users.",
    create: (o) =>
      PasswdFileBackend.open({
        path: o.path,
        timeoutMs: o.timeoutMs,
        logger: o.logger,
        clock: o.clock,
        ...(o.defaultScheme !== undefined ? { defaultScheme: o.defaultScheme } : {}),
      }),
  },
  dovecot: {
    file: 'dovecot.ts',
    doc: 'Dovecot auth-client protocol (as Postfix smtpd_sasl_type = dovecot) over a unix socket or host:port; one persistent connection.',
    create: async (o) => {
      const b = new DovecotAuthBackend({
        path: o.path,
        timeoutMs: o.timeoutMs,
        logger: o.logger,
        clock: o.clock,
        ...(o.service !== undefined ? { service: o.service } : {}),
      });
      b.start();
      return b;
    },
  },
  saslauthd: {
    file: 'saslauthd.ts',
    doc: "Cyrus saslauthd's mux socket (saslauthd -m DIR → DIR/mux); one connection per check.",
    create: (o) =>
      SaslauthdBackend.open({
        path: o.path,
        timeoutMs: o.timeoutMs,
        logger: o.logger,
        clock: o.clock,
        ...(o.service !== undefined ? { service: o.service } : {}),
        ...(o.realm !== undefined ? { realm: o.realm } : {}),
        ...(o.splitRealm !== undefined ? { splitRealm: o.splitRealm } : {}),
      }),
  },
};

/** Builds the configured backend; RG_ERR_AUTH_BACKEND for anything wrong with the options. */
export async function createBackend(opts: BackendOptions): Promise<SaslBackend> {
  const row = Object.hasOwn(BACKENDS, opts.backend) ? BACKENDS[opts.backend] : undefined;
  if (!row) {
    throw new RelaygateError('RG_ERR_AUTH_BACKEND', `unknown SASL backend ${JSON.stringify(opts.backend)}: use one of ${Object.keys(BACKENDS).join(', ')}`);
  }
  if (!Number.isInteger(opts.timeoutMs) || opts.timeoutMs < 1 || opts.timeoutMs > 600_000) {
    throw new RelaygateError('RG_ERR_AUTH_BACKEND', `${opts.backend}: timeout must be between 1 ms and 10 minutes, got ${String(opts.timeoutMs)}`);
  }
  if (typeof opts.path !== 'string' || opts.path === '') {
    throw new RelaygateError('RG_ERR_AUTH_BACKEND', `${opts.backend}: path is required`);
  }
  return row.create(opts);
}
