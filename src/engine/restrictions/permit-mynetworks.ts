// permit_mynetworks: permit when the client IP is in `mynetworks` (Postfix).
// Security: trusts mynetworks from the configuration; the client IP was normalized, so an IPv4 rule also
// matches the client seen as ::ffff:a.b.c.d, and junk (ip undefined) matches nothing.

import { DUNNO } from '../outcome.ts';
import type { RestrictionDef } from '../restriction.ts';

export const permitMynetworks: RestrictionDef = {
  name: 'permit_mynetworks',
  takesTable: false,
  doc: 'permit when the client IP is in `mynetworks`',
  compile: ({ env }) => (ctx) => {
    if (ctx.ip === undefined) return DUNNO;
    const block = env.mynetworks.match(ctx.ip);
    return block === undefined ? DUNNO : { kind: 'ok', detail: block.text };
  },
};
