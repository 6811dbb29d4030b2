// permit_auth_destination: permit when the recipient is an authorized destination (mydestination,
// relay_domains) — e.g. first in a list so inbound mail for local domains skips the client checks.
// Security: same definition of "authorized" as reject_unauth_destination (destination.ts).

import { authorizedDestination } from '../destination.ts';
import type { Outcome } from '../outcome.ts';
import type { RestrictionDef } from '../restriction.ts';

const NO_RECIPIENT: Outcome = Object.freeze({ kind: 'dunno', detail: 'no recipient' });

export const permitAuthDestination: RestrictionDef = {
  name: 'permit_auth_destination',
  takesTable: false,
  doc: 'permit when the recipient domain is in `mydestination` or `relay_domains`',
  compile:
    ({ env }) =>
    (ctx) => {
      const rcpt = ctx.recipient();
      if (rcpt === undefined) return NO_RECIPIENT;
      const v = authorizedDestination(rcpt, env);
      return { kind: v.authorized ? 'ok' : 'dunno', detail: v.why };
    },
};
