// Sender-login checks (Postfix reject_*_sender_login_mismatch with smtpd_sender_login_maps).
//
// The owners of a sender are found in sender_login_maps by the full address, then by `@domain`; the value
// lists logins separated by commas or whitespace, compared case-insensitively (Postfix strcasecmp_utf8).
// The login is the SASL user, or for a POP-before-SMTP client the user its grant records: relaygate can
// hold those users to their own addresses, which no older POP-before-SMTP tool could.
// Security: a grant without a user (DRAC feeds none) is NOT a login. The null sender is never checked
// (bounces have no owner). A table that fails answers 451 4.3.0, never "no owner".

import { addressKey, type ParsedAddress } from './address.ts';
import type { RequestContext } from './context.ts';
import { DUNNO, makeReply, safe, type Outcome } from './outcome.ts';

/** The owners listed for `sender`, or undefined when no table lists it. */
export async function senderOwners(ctx: RequestContext, sender: ParsedAddress): Promise<string[] | undefined> {
  const full = addressKey(sender);
  const keys = sender.hasDomain ? [full, `@${sender.domain}`] : [full];
  for (let i = 0; i < keys.length; i++) {
    for (const table of ctx.env.senderLoginMaps) {
      // `@domain` is a partial key: only tables that support partial keys are asked (Postfix maps_find PARTIAL).
      if (i > 0 && !table.partialKeys) continue;
      const value = await ctx.lookup(table, keys[i]!, sender.raw);
      if (value !== undefined) return value.split(/[\s,]+/).filter((s) => s !== '');
    }
  }
  return undefined;
}

function applicable(ctx: RequestContext): ParsedAddress | undefined {
  const sender = ctx.sender();
  if (sender === undefined || sender.isNull) return undefined;
  return sender;
}

/** reject_authenticated_sender_login_mismatch: a logged-in client must own the sender address. */
export async function authenticatedMismatch(ctx: RequestContext): Promise<Outcome> {
  const sender = applicable(ctx);
  if (sender === undefined) return { kind: 'dunno', detail: 'no sender' };
  const login = await ctx.login();
  if (login === undefined) return { kind: 'dunno', detail: 'not logged in' };
  const owners = await senderOwners(ctx, sender);
  const lower = login.toLowerCase();
  if (owners !== undefined && owners.some((o) => o.toLowerCase() === lower)) {
    return { kind: 'dunno', detail: `${sender.raw} owned by ${login}` };
  }
  return {
    kind: 'reply',
    reply: makeReply(553, '5.7.1', `<${safe(sender.raw)}>: Sender address rejected: not owned by user ${safe(login)}`),
    detail: owners === undefined ? 'no owner listed' : `owners: ${owners.join(', ')}`,
  };
}

/** reject_unauthenticated_sender_login_mismatch: a client that is not logged in may not use an owned address. */
export async function unauthenticatedMismatch(ctx: RequestContext): Promise<Outcome> {
  const sender = applicable(ctx);
  if (sender === undefined) return { kind: 'dunno', detail: 'no sender' };
  const login = await ctx.login();
  if (login !== undefined) return { kind: 'dunno', detail: `logged in as ${login}` };
  const owners = await senderOwners(ctx, sender);
  if (owners === undefined) return DUNNO;
  return {
    kind: 'reply',
    reply: makeReply(553, '5.7.1', `<${safe(sender.raw)}>: Sender address rejected: not logged in`),
    detail: `owners: ${owners.join(', ')}`,
  };
}
