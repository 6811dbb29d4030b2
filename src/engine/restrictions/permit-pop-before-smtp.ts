// permit_pop_before_smtp: permit when the client IP holds an unexpired grant — a recent POP3/IMAP login
// seen by a log watcher, or a trusted feed (DRAC, whoson, signed HTTP). relaygate's one new restriction.
// Security: trusts the access map (expired = absent, even before the sweep). A store failure throws a
// LookupFailure, which the engine answers 451 4.3.0: a broken store never permits.
// Sunset (pop_before_smtp_sunset, see ../sunset.ts): before the date that applies to the grant's login or the
// sender, the grant permits with a notice (logged as a `warn:` line, and a header when configured); from the
// date on it answers DUNNO, and the engine words the relay denial that follows with the sunset text.

import type { Grant } from '../../store/types.ts';
import type { RequestContext } from '../context.ts';
import type { Outcome } from '../outcome.ts';
import type { RestrictionDef } from '../restriction.ts';
import { plainAddress } from '../sunset.ts';

const NO_GRANT: Outcome = Object.freeze({ kind: 'dunno', detail: 'no grant' });
const NO_ADDRESS: Outcome = Object.freeze({ kind: 'dunno', detail: 'no usable client address' });

function verdict(ctx: RequestContext, g: Grant | undefined): Outcome {
  if (g === undefined) return NO_GRANT;
  const who = `user=${g.user ?? '-'} source=${g.source}`;
  const policy = ctx.env.sunset;
  if (policy === undefined) return { kind: 'ok', detail: who };
  const hit = policy.match(g.user, plainAddress(ctx.sender()));
  if (hit === undefined) return { kind: 'ok', detail: who };
  if (ctx.now >= hit.at) {
    ctx.sunset = { hit, ended: true };
    return { kind: 'dunno', detail: `${who}: grant ignored, POP-before-SMTP ended on ${hit.date} for ${hit.key}` };
  }
  ctx.sunset = { hit, ended: false };
  ctx.addSideLine({ kind: 'warn', what: `POP-before-SMTP relaying for ${hit.key} ends on ${hit.date} (${who}): this user should turn on SMTP authentication`, restriction: 'permit_pop_before_smtp' });
  return { kind: 'ok', detail: `${who} sunset=${hit.date}` };
}

export const permitPopBeforeSmtp: RestrictionDef = {
  name: 'permit_pop_before_smtp',
  takesTable: false,
  doc: 'permit when the client IP holds an unexpired grant (a recent POP/IMAP login or a feed); see pop_before_smtp_sunset',
  compile: () => (ctx) => {
    if (ctx.ip === undefined) return NO_ADDRESS;
    const g = ctx.grant();
    return g instanceof Promise ? g.then((x) => verdict(ctx, x)) : verdict(ctx, g);
  },
};
