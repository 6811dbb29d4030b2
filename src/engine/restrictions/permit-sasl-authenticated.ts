// permit_sasl_authenticated: permit when the client authenticated with SMTP AUTH (Postfix).
// Security: trusts DecisionRequest.saslUser, which only the gateway's successful AUTH (or Postfix's policy
// request) sets; a POP-before-SMTP grant is not SASL and never satisfies this restriction.

import { DUNNO } from '../outcome.ts';
import type { RestrictionDef } from '../restriction.ts';

export const permitSaslAuthenticated: RestrictionDef = {
  name: 'permit_sasl_authenticated',
  takesTable: false,
  doc: 'permit when the client authenticated with SMTP AUTH',
  compile: () => (ctx) => {
    if (ctx.saslUser === undefined) return DUNNO;
    const method = ctx.req.saslMethod ? `sasl_method=${ctx.req.saslMethod} ` : '';
    return { kind: 'ok', detail: `${method}sasl_username=${ctx.saslUser}` };
  },
};
