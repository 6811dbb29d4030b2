// Postfix-shaped SASL log lines, so that the fail2ban `postfix` filter (modes `auth`, `aggressive`) and
// operators' habits keep working when relaygate answers AUTH instead of Postfix.
//
// What Postfix writes (src/smtpd/smtpd_sasl_glue.c; matched by fail2ban config/filter.d/postfix.conf):
//   warning: unknown[192.0.2.9]: SASL LOGIN authentication failed: UGFzc3dvcmQ6
//   warning: unknown[192.0.2.9]: SASL PLAIN authentication failed: authentication failure
//   warning: unknown[192.0.2.9]: SASL PLAIN authentication failed: Connection lost to authentication server
//   4F3A2B1C: client=unknown[192.0.2.7], sasl_method=PLAIN, sasl_username=alice
// The failure text after "failed:" is what Postfix's SASL layer reports: with Dovecot, the last challenge
// (`UGFzc3dvcmQ6` = "Password:" for LOGIN); with Cyrus, "authentication failure". relaygate writes the same
// two and, for a backend outage (tempfail), "Connection lost to authentication server": fail2ban's filter
// deliberately ignores that text in every mode, so an outage never bans the clients who happened to try.
// Newer Postfix appends `, sasl_username=<name>` to failures; so does relaygate when the name is known.
//
// These functions return the message text; the caller logs it as the pino `msg` (and, for syslog/journald
// output, with an ident that the filter's `_daemon` accepts, e.g. `postfix/relaygate` or a jail override).
//
// Security: fail2ban takes the host from the first `[...]` of the line, which relaygate writes itself from a
// normalized IP; the username (the only client-controlled text) comes after it, with control and other
// non-printable characters replaced by `?` (Postfix's printable()) and cut at 256 characters, so it can neither
// start a new line nor move the matched host. No password, response or digest is ever part of a line.

import { normalizeIp } from '../net/index.ts';
import type { Mechanism } from './types.ts';

export interface SaslLogClient {
  /** client IP (normalized here again; anything else prints as `unknown`) */
  readonly ip: string;
  /** reverse name; `unknown` when there is none (relaygate does no DNS in tests) */
  readonly name?: string;
  /** client port, printed as `name[addr]:port` like Postfix's smtpd_client_port_logging */
  readonly port?: number;
}

/** Postfix's printable(): every character outside printable ASCII/Unicode becomes `?`; at most `max`. */
export function printable(text: string, max = 256): string {
  const cut = text.length > max ? text.slice(0, max) : text;
  return cut.replace(/[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]/g, '?');
}

/** `name[addr]` or `name[addr]:port`, as Postfix's smtpd prints a client. */
export function clientNamaddr(c: SaslLogClient): string {
  const ip = normalizeIp(c.ip) ?? 'unknown';
  const name = c.name && /^[A-Za-z0-9.-]{1,253}$/.test(c.name) ? c.name : 'unknown';
  return `${name}[${ip}]${c.port !== undefined && Number.isInteger(c.port) && c.port > 0 && c.port < 65536 ? `:${c.port}` : ''}`;
}

/** The text Postfix puts after "authentication failed:" for an ordinary failure of this mechanism. */
export function failureText(mechanism: Mechanism): string {
  return mechanism === 'LOGIN' ? 'UGFzc3dvcmQ6' : 'authentication failure';
}

export const TEMPFAIL_TEXT = 'Connection lost to authentication server';

/** `warning: unknown[192.0.2.9]: SASL PLAIN authentication failed: authentication failure[, sasl_username=x]` */
export function formatSaslFailure(opts: {
  client: SaslLogClient;
  mechanism: Mechanism;
  /** 'fail' (wrong credentials) or 'tempfail' (backend down or slow) */
  outcome: 'fail' | 'tempfail';
  username?: string;
}): string {
  const text = opts.outcome === 'tempfail' ? TEMPFAIL_TEXT : failureText(opts.mechanism);
  const user = opts.username !== undefined && opts.username !== '' ? `, sasl_username=${printable(opts.username)}` : '';
  return `warning: ${clientNamaddr(opts.client)}: SASL ${opts.mechanism} authentication failed: ${text}${user}`;
}

/** `[QUEUEID: ]client=unknown[192.0.2.7], sasl_method=PLAIN, sasl_username=alice` */
export function formatSaslSuccess(opts: { client: SaslLogClient; mechanism: Mechanism; username: string; queueId?: string }): string {
  const q = opts.queueId !== undefined && /^[0-9A-Za-z]{1,32}$/.test(opts.queueId) ? `${opts.queueId}: ` : '';
  return `${q}client=${clientNamaddr(opts.client)}, sasl_method=${opts.mechanism}, sasl_username=${printable(opts.username)}`;
}

/**
 * The lockout (421 4.7.0 + disconnect), shaped like Postfix's anvil limit warnings:
 * `warning: SASL authentication failure limit exceeded: 5 from unknown[192.0.2.9] for service smtp`
 */
export function formatSaslLockout(opts: { client: SaslLogClient; failures: number; service?: string }): string {
  const service = opts.service && /^[A-Za-z0-9_.-]{1,32}$/.test(opts.service) ? opts.service : 'smtp';
  return `warning: SASL authentication failure limit exceeded: ${Math.max(0, Math.trunc(opts.failures))} from ${clientNamaddr(opts.client)} for service ${service}`;
}
