// reject_authenticated_sender_login_mismatch: a client logged in by SASL, or holding a grant that names a
// user, must be listed as an owner of the sender address in sender_login_maps (Postfix: an address with
// no owner is refused too): `553 5.7.1 <sender>: Sender address rejected: not owned by user alice`.
// Security: see sender-login.ts.

import { authenticatedMismatch } from '../sender-login.ts';
import type { RestrictionDef } from '../restriction.ts';

export const rejectAuthenticatedSenderLoginMismatch: RestrictionDef = {
  name: 'reject_authenticated_sender_login_mismatch',
  takesTable: false,
  doc: 'reject an authenticated client (SASL, or a grant that names a user) whose login does not own the sender in `sender_login_maps`',
  needsSenderLoginMaps: true,
  compile: () => authenticatedMismatch,
};
