// check_client_access type:name: look the client up in an access(5) table — the hostname and its parent
// domains first (unless it is `unknown`), then the IP and its partial forms (192.0.2, 192.0, 192) — and act
// on the first value found (access.ts).
// Security: the hostname is only as trustworthy as the front end's reverse-DNS check; prefer IP keys for
// anything that permits. A failing table defers (451 4.3.0).

import { clientAccess } from '../access.ts';
import { DUNNO } from '../outcome.ts';
import type { RestrictionDef } from '../restriction.ts';

export const checkClientAccess: RestrictionDef = {
  name: 'check_client_access',
  takesTable: true,
  doc: 'look up the client hostname, IP and its partial forms in the table; act on the value (access(5))',
  compile:
    ({ table }) =>
    async (ctx) =>
      (await clientAccess(ctx, table!)) ?? DUNNO,
};
