// permit: permit unconditionally (Postfix), the explicit end of a list.
// Security: in relay_restrictions a `permit` before every reject makes an open relay; createEngine refuses that.

import { OK } from '../outcome.ts';
import type { RestrictionDef } from '../restriction.ts';

export const permit: RestrictionDef = {
  name: 'permit',
  takesTable: false,
  doc: 'permit',
  compile: () => () => OK,
};
