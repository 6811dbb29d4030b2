// The Postfix-shaped decision line, one per decision (smtpd's log_whatsup()):
//   NOQUEUE: reject: RCPT from unknown[192.0.2.9]: 554 5.7.1 <bob@remote.example>: Relay access denied; from=<alice@example.com> to=<bob@remote.example> proto=ESMTP helo=<client.example>
//   NOQUEUE: permit: RCPT from unknown[192.0.2.7]: permit_pop_before_smtp user=alice source=dovecot; from=<..> to=<..> proto=ESMTP helo=<..>
// Defers are `reject:` lines with a 4xx code, as in Postfix; `reject_warning:` and `warn:` use the same shape.
// Operators and fail2ban filters already know this shape, so it is kept exactly.
// Security: every client-supplied value passes through printable(), so a CR/LF in a HELO name or an
// address cannot forge a second log line. Built only on demand: it is skipped when nobody reads it.

import { angle, clientLabel, printable } from './format.ts';

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
  let line = `NOQUEUE: ${kind}: ${f.stage === 'rcpt' ? 'RCPT' : 'MAIL'} from ${clientLabel(f.clientIp, f.clientName)}: ${printable(what)};`;
  if (f.sender !== undefined) line += ` from=${angle(f.sender)}`;
  if (f.recipient !== undefined) line += ` to=${angle(f.recipient)}`;
  if (f.protocol !== undefined && f.protocol !== '') line += ` proto=${printable(f.protocol)}`;
  if (f.helo !== undefined && f.helo !== '') line += ` helo=${angle(f.helo)}`;
  return line;
}
