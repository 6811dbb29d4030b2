// permit_pop_before_smtp: permit when the client IP holds an unexpired grant — a recent POP3/IMAP login
// seen by a log watcher, or a trusted feed (DRAC, whoson, signed HTTP). relaygate's one new restriction.
// Security: trusts the access map (expired = absent, even before the sweep). A store failure throws a
// LookupFailure, which the engine answers 451 4.3.0: a broken store never permits.

import type { Grant } from '../../store/types.ts';
import type { Outcome } from '../outcome.ts';
import type { RestrictionDef } from '../restriction.ts';

const NO_GRANT: Outcome = Object.freeze({ kind: 'dunno', detail: 'no grant' });
const NO_ADDRESS: Outcome = Object.freeze({ kind: 'dunno', detail: 'no usable client address' });

function verdict(g: Grant | undefined): Outcome {
  return g === undefined ? NO_GRANT : { kind: 'ok', detail: `user=${g.user ?? '-'} source=${g.source}` };
}

export const permitPopBeforeSmtp: RestrictionDef = {
  name: 'permit_pop_before_smtp',
  takesTable: false,
  doc: 'permit when the client IP holds an unexpired grant (a recent POP/IMAP login or a feed)',
  compile: () => (ctx) => {
    if (ctx.ip === undefined) return NO_ADDRESS;
    const g = ctx.grant();
    return g instanceof Promise ? g.then(verdict) : verdict(g);
  },
};
