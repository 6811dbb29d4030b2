// The Postfix-shaped decision line, one per decision (smtpd's log_whatsup()):
//   NOQUEUE: reject: RCPT from unknown[192.0.2.9]: 554 5.7.1 <bob@remote.example>: Relay access denied; from=<alice@example.com> to=<bob@remote.example> proto=ESMTP helo=<client.example>
//   NOQUEUE: permit: RCPT from unknown[192.0.2.7]: permit_pop_before_smtp user=alice source=dovecot; from=<..> to=<..> proto=ESMTP helo=<..>
// Defers are `reject:` lines with a 4xx code, as in Postfix; `reject_warning:` and `warn:` use the same shape.
// Operators and fail2ban filters already know this shape, so it is kept exactly.
// Security: every client-supplied value passes through printable(), so a CR/LF in a HELO name or an
// address cannot forge a second log line. Built only on demand: it is skipped when nobody reads it.

import { printable } from './format.ts';

/** `dunno`: a policy-service list ran out (logged at debug; Postfix's own restrictions decide). */
export type DecisionLineKind = 'reject' | 'permit' | 'reject_warning' | 'warn' | 'dunno';

export interface DecisionLineFields {
  readonly stage: 'mail' | 'rcpt';
  /** the normalized client address (or the raw junk the request carried) */
  readonly clientIp: string;
  readonly clientName?: string | undefined;
  readonly sender?: string | undefined;
  readonly recipient?: string | undefined;
  readonly protocol?: string | undefined;
  readonly helo?: string | undefined;
}

/** `what` is the reply (`554 5.7.1 <x>: ...`) or, for a permit, the restriction and its detail. */
export function decisionLine(kind: DecisionLineKind, f: DecisionLineFields, what: string): string {
  // Composed raw first: when no field holds a control character (nearly always) that is the line; otherwise
  // it is composed again with every client-supplied value escaped. One scan instead of one per field.
  const raw = compose(kind, f, what, identity);
  // eslint-disable-next-line no-control-regex
  return /[\x00-\x1f\x7f]/.test(raw) ? compose(kind, f, what, printable) : raw;
}

function identity(s: string): string {
  return s;
}

function compose(kind: DecisionLineKind, f: DecisionLineFields, what: string, esc: (s: string) => string): string {
  const name = f.clientName !== undefined && f.clientName.length > 0 ? f.clientName : 'unknown';
  let line = `NOQUEUE: ${kind}: ${f.stage === 'rcpt' ? 'RCPT' : 'MAIL'} from ${esc(name)}[${esc(f.clientIp)}]: ${esc(what)};`;
  if (f.sender !== undefined) line += ` from=<${esc(f.sender)}>`;
  if (f.recipient !== undefined) line += ` to=<${esc(f.recipient)}>`;
  if (f.protocol !== undefined && f.protocol !== '') line += ` proto=${esc(f.protocol)}`;
  if (f.helo !== undefined && f.helo !== '') line += ` helo=<${esc(f.helo)}>`;
  return line;
}
