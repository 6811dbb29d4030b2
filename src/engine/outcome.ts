// What one restriction answers (Postfix's SMTPD_CHECK_OK / _DUNNO / smtpd_check_reject()), and the reply
// helpers that shape SMTP replies the way Postfix's smtpd_check.c does.
// Security: reply texts embed client-supplied names and addresses; they are passed through printable()
// here so a CR/LF in a policy request can never split an SMTP reply or a log line.

import { printable } from '../log/format.ts';

export interface Reply {
  readonly code: number;
  /** enhanced status code (RFC 3463), its class digit always equal to the reply code's */
  readonly dsn: string;
  readonly text: string;
}

export type Outcome =
  /** no opinion: go on with the next restriction */
  | { readonly kind: 'dunno'; readonly detail?: string }
  /** permit: stop */
  | { readonly kind: 'ok'; readonly detail?: string }
  /** 4xx/5xx: stop (unless warn_if_reject turns it into a warning) */
  | { readonly kind: 'reply'; readonly reply: Reply; readonly detail?: string }
  /** a lookup or configuration failure: always stops with a 4xx, immune to warn_if_reject */
  | { readonly kind: 'fail'; readonly reply: Reply; readonly detail: string }
  /** if the list later permits, answer this reply instead (Postfix DEFER_IF_PERMIT) */
  | { readonly kind: 'defer_if_permit'; readonly reply: Reply; readonly detail?: string }
  /** if the list later rejects (5xx), answer this 4xx instead (Postfix DEFER_IF_REJECT) */
  | { readonly kind: 'defer_if_reject'; readonly reply: Reply; readonly detail?: string }
  /** access-table WARN: log a `warn:` line and go on */
  | { readonly kind: 'warn'; readonly text: string; readonly detail?: string }
  /** the next restriction's reject only warns */
  | { readonly kind: 'warn_if_reject' };

/** printable(), skipping the regex for the usual string without control characters (hot path). */
export function safe(text: string): string {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 32 || c === 127) return printable(text);
  }
  return text;
}

export const DUNNO: Outcome = Object.freeze({ kind: 'dunno' });
export const OK: Outcome = Object.freeze({ kind: 'ok' });

/** Thrown by a lookup that cannot be answered; the engine turns it into `451 4.3.0 <subject>: Temporary lookup failure`. */
export class LookupFailure extends Error {
  constructor(
    /** what the reply names: a client `name[addr]`, a sender or a recipient */
    readonly subject: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'LookupFailure';
  }
}

/** Postfix smtpd_check_reject(): the DSN's class digit follows the reply code (a 5xx never carries 4.x.x). */
export function makeReply(code: number, dsn: string, text: string): Reply {
  const cls = String(code)[0]!;
  return { code, dsn: dsn[0] === cls ? dsn : `${cls}${dsn.slice(1)}`, text };
}

/** `<name>: Class rejected: why`, the shape of every Postfix access reply. */
export function rejectedText(name: string, replyClass: string, why: string): string {
  return `<${safe(name)}>: ${replyClass} rejected: ${safe(why)}`;
}

/** Postfix dsn_split(): an optional leading `X.Y.Z` in a table's text becomes the DSN. */
export function splitDsn(text: string, defaultDsn: string): { dsn: string; text: string } {
  const m = /^([245]\.\d{1,3}\.\d{1,3})(?:\s+|$)(.*)$/s.exec(text);
  return m ? { dsn: m[1]!, text: m[2]! } : { dsn: defaultDsn, text };
}

export function temporaryLookupFailure(subject: string): Reply {
  return { code: 451, dsn: '4.3.0', text: `<${safe(subject)}>: Temporary lookup failure` };
}

/** What Postfix answers for a broken access-table entry or an unusable restriction (reject_server_error). */
export const SERVER_CONFIGURATION_ERROR: Reply = Object.freeze({ code: 451, dsn: '4.3.5', text: 'Server configuration error' });

export function replyString(r: Reply): string {
  return `${r.code} ${r.dsn} ${r.text}`;
}
