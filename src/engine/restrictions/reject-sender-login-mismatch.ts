// reject_sender_login_mismatch: both sender-login checks (Postfix): a logged-in client must own the sender
// address; a client that is not logged in may not use an address that has an owner.
// Security: see sender-login.ts (grant users count as logins; a grant without user does not).

import { authenticatedMismatch, unauthenticatedMismatch } from '../sender-login.ts';
import type { RestrictionDef } from '../restriction.ts';

export const rejectSenderLoginMismatch: RestrictionDef = {
  name: 'reject_sender_login_mismatch',
  takesTable: false,
  doc: 'both checks below',
  needsSenderLoginMaps: true,
  compile: () => async (ctx) => {
    const login = await ctx.login();
    return login === undefined ? unauthenticatedMismatch(ctx) : authenticatedMismatch(ctx);
  },
};
