// Is a recipient an authorized destination? (Postfix permit_auth_destination: the domain resolves to
// final delivery here (mydestination) or to relay_domains.) Shared by reject_unauth_destination,
// defer_unauth_destination and permit_auth_destination so the three can never disagree.
// Security: this is the open-relay gate. Sender-specified routing (`%`, `!`, quoted `@`, source routes) is
// never authorized (Postfix allow_untrusted_routing=no), address literals are not local, and an address
// that does not parse is not authorized either: when in doubt, the answer is "not ours".

import type { ParsedAddress } from './address.ts';
import type { EngineEnv } from './context.ts';

export interface DestinationVerdict {
  readonly authorized: boolean;
  /** why, for the trace: `mydestination example.com`, `sender-specified routing`, ... */
  readonly why: string;
}

const MALFORMED: DestinationVerdict = Object.freeze({ authorized: false, why: 'malformed address' });
const NULL_RCPT: DestinationVerdict = Object.freeze({ authorized: false, why: 'empty recipient' });
const ROUTED: DestinationVerdict = Object.freeze({ authorized: false, why: 'sender-specified routing (% ! or @ in the local part)' });
const LOCAL: DestinationVerdict = Object.freeze({ authorized: true, why: 'local (no domain)' });
const LITERAL: DestinationVerdict = Object.freeze({ authorized: false, why: 'address literal is not a local destination' });

export function authorizedDestination(rcpt: ParsedAddress, env: EngineEnv): DestinationVerdict {
  if (rcpt.isNull) return NULL_RCPT;
  if (!rcpt.valid) return MALFORMED;
  if (rcpt.routed) return ROUTED;
  // Postfix appends $myorigin to a bare local part: it is delivered here.
  if (!rcpt.hasDomain) return LOCAL;
  if (rcpt.literal) return LITERAL;
  const local = env.mydestination.match(rcpt.domain);
  if (local !== undefined) return { authorized: true, why: `mydestination ${local}` };
  const relay = env.relayDomains.match(rcpt.domain);
  if (relay !== undefined) return { authorized: true, why: `relay_domains ${relay}` };
  return { authorized: false, why: `${rcpt.domain} is not in mydestination or relay_domains` };
}
