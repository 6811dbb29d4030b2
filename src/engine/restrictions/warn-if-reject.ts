// warn_if_reject: the next restriction's reject (or defer) is logged as `reject_warning` and evaluation
// continues, for trying a new restriction on live traffic (Postfix).
// Security: lookup failures are never softened into warnings: they still defer.

import type { Outcome } from '../outcome.ts';
import type { RestrictionDef } from '../restriction.ts';

const WARN_IF_REJECT: Outcome = Object.freeze({ kind: 'warn_if_reject' });

export const warnIfReject: RestrictionDef = {
  name: 'warn_if_reject',
  takesTable: false,
  doc: "the next restriction's reject is logged as `reject_warning` and does not take effect",
  compile: () => () => WARN_IF_REJECT,
};
