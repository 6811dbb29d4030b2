// defer_if_permit: arm a deferral; if a later restriction (or the end of the list) permits, the answer is
// `450 4.7.1 <rcpt>: Recipient address rejected: defer_if_permit requested` instead (Postfix's text).
// Security: counts as a refusal for the open-relay rule, since with it no request is ever permitted.

import type { RestrictionDef } from '../restriction.ts';
import { makeReply, rejectedText } from '../outcome.ts';

export const deferIfPermit: RestrictionDef = {
  name: 'defer_if_permit',
  takesTable: false,
  doc: 'if a later restriction permits, defer instead',
  refusesRelay: true,
  compile: () => (ctx) => ({
    kind: 'defer_if_permit',
    reply: makeReply(450, '4.7.1', rejectedText(ctx.replyName, ctx.replyClass, 'defer_if_permit requested')),
  }),
};
