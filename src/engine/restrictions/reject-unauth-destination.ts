// reject_unauth_destination: reject unless the recipient is an authorized destination (mydestination,
// relay_domains): `554 5.7.1 <rcpt>: Relay access denied`, Postfix's text and codes.
// Security: this is what stops relaygate from being an open relay; see destination.ts for what counts as
// authorized (never sender-specified routing). Without a recipient (MAIL stage) it has nothing to judge.

import { authorizedDestination } from '../destination.ts';
import { makeReply, safe, type Outcome } from '../outcome.ts';
import type { RequestContext } from '../context.ts';
import type { RestrictionDef, StepFn } from '../restriction.ts';

const NO_RECIPIENT: Outcome = Object.freeze({ kind: 'dunno', detail: 'no recipient' });

/** Shared with defer_unauth_destination: the same test, a different reply code. */
export function unauthDestination(code: number, dsn: string): StepFn {
  return (ctx: RequestContext): Outcome => {
    const rcpt = ctx.recipient();
    if (rcpt === undefined) return NO_RECIPIENT;
    const v = authorizedDestination(rcpt, ctx.env);
    if (v.authorized) return { kind: 'dunno', detail: v.why };
    return { kind: 'reply', reply: makeReply(code, dsn, `<${safe(rcpt.raw)}>: Relay access denied`), detail: v.why };
  };
}

export const rejectUnauthDestination: RestrictionDef = {
  name: 'reject_unauth_destination',
  takesTable: false,
  doc: 'reject unless the recipient domain is in `mydestination` or `relay_domains` (`554 5.7.1 Relay access denied`); sender-specified routing (`%`, `!`, quoted `@`) is never an authorized destination',
  refusesRelay: true,
  compile: () => unauthDestination(554, '5.7.1'),
};
