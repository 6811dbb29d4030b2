// reject_unauthenticated_sender_login_mismatch: a client that is not logged in (no SASL, no grant with a
// user) may not use a sender address that sender_login_maps gives an owner:
// `553 5.7.1 <sender>: Sender address rejected: not logged in`.
// Security: see sender-login.ts.

import { unauthenticatedMismatch } from '../sender-login.ts';
import type { RestrictionDef } from '../restriction.ts';

export const rejectUnauthenticatedSenderLoginMismatch: RestrictionDef = {
  name: 'reject_unauthenticated_sender_login_mismatch',
  takesTable: false,
  doc: 'reject an unauthenticated client using a sender address that `sender_login_maps` gives an owner',
  needsSenderLoginMaps: true,
  compile: () => unauthenticatedMismatch,
};
