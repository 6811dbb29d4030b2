// reject: reject unconditionally with Postfix's reply (reject_code 554):
// `554 5.7.1 <rcpt>: Recipient address rejected: Access denied` (Sender address at the MAIL stage).
// Security: trusts nothing; it is the usual last entry of a closed list.

import { makeReply, rejectedText } from '../outcome.ts';
import type { RestrictionDef } from '../restriction.ts';

export const reject: RestrictionDef = {
  name: 'reject',
  takesTable: false,
  doc: 'reject (`554 5.7.1 ... Access denied`)',
  refusesRelay: true,
  compile: () => (ctx) => ({ kind: 'reply', reply: makeReply(554, '5.7.1', rejectedText(ctx.replyName, ctx.replyClass, 'Access denied')) }),
};
