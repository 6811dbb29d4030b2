// defer: defer unconditionally: `450 4.7.1 <rcpt>: Recipient address rejected: Try again later`.
// (Postfix's defer_code is 450 with text "Try again later"; its DSN is 4.3.2, relaygate uses 4.7.1 as
// documented in README, a policy rather than a system condition.)
// Security: trusts nothing.

import { makeReply, rejectedText } from '../outcome.ts';
import type { RestrictionDef } from '../restriction.ts';

export const defer: RestrictionDef = {
  name: 'defer',
  takesTable: false,
  doc: 'defer (`450 4.7.1 ... Try again later`)',
  refusesRelay: true,
  compile: () => (ctx) => ({ kind: 'reply', reply: makeReply(450, '4.7.1', rejectedText(ctx.replyName, ctx.replyClass, 'Try again later')) }),
};
