// check_sender_access type:name: look the envelope sender up in an access(5) table — `user@domain`, then
// `domain` and its parent domains, then `user@`; the null sender as `<>` — and act on the first value.
// Security: the sender is whatever the client typed; use this to refuse, or pair an OK with SASL checks.

import { senderAccess } from '../access.ts';
import { DUNNO, type Outcome } from '../outcome.ts';
import type { RestrictionDef } from '../restriction.ts';

const NO_SENDER: Outcome = Object.freeze({ kind: 'dunno', detail: 'no sender' });

export const checkSenderAccess: RestrictionDef = {
  name: 'check_sender_access',
  takesTable: true,
  doc: 'look up the sender address, domain, parent domains and `user@` in the table',
  compile:
    ({ table }) =>
    async (ctx) => {
      const sender = ctx.sender();
      if (sender === undefined) return NO_SENDER;
      return (await senderAccess(ctx, table!, sender)) ?? DUNNO;
    },
};
