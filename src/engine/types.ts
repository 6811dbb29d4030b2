// The engine's public types: what a front end asks (DecisionRequest) and what it gets back (Decision).
//
// Front ends (SMTP gateway, policy service, socketmap, CLI) translate their protocol into a DecisionRequest
// and the Decision back into their protocol; no relay logic lives in them.
// Security: every field of a DecisionRequest comes from an SMTP client except saslUser (set by the
// gateway's AUTH after a successful login, or by Postfix's policy request) and clientIp (from the socket).
// The engine still re-normalizes clientIp and treats junk as an unknown client that matches nothing.

import type { CidrSet } from '../net/index.ts';
import type { Grant } from '../store/types.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log/logger.ts';
import type { LookupTable } from '../tables/index.ts';
import type { SunsetPolicy } from './sunset.ts';

/** `mail` runs sender_restrictions (MAIL FROM), `rcpt` runs relay_restrictions (RCPT TO). */
export type Stage = 'mail' | 'rcpt';

export interface DecisionRequest {
  readonly stage: Stage;
  /** normalized by the caller (normalizeIp); re-checked here */
  readonly clientIp: string;
  /** verified reverse name, or `unknown` / absent */
  readonly clientName?: string | undefined;
  readonly helo?: string | undefined;
  /** SMTP | ESMTP */
  readonly protocol?: string | undefined;
  /** set only after a successful SMTP AUTH */
  readonly saslUser?: string | undefined;
  readonly saslMethod?: string | undefined;
  /** envelope sender; '' is the null sender `<>` */
  readonly sender?: string | undefined;
  readonly recipient?: string | undefined;
  /** ms since the epoch; defaults to the engine's clock */
  readonly now?: number | undefined;
}

export type TraceResult = 'OK' | 'DUNNO' | 'REJECT' | 'DEFER' | 'WARN';

export interface TraceEntry {
  readonly restriction: string;
  readonly result: TraceResult;
  readonly detail?: string;
}

export interface Decision {
  readonly action: 'permit' | 'reject' | 'defer';
  /** SMTP reply code; null for a permit */
  readonly code: number | null;
  /** RFC 3463 enhanced status code, e.g. `5.7.1`; null for a permit */
  readonly dsn: string | null;
  /** reply text after code and DSN, e.g. `<bob@remote.example>: Relay access denied` */
  readonly text: string | null;
  /** the list entry that decided (e.g. `check_client_access texthash:/etc/x`); null when the list ran out */
  readonly decidedBy: string | null;
  readonly trace: readonly TraceEntry[];
  /** the client's unexpired grant, when the engine looked it up and found one */
  readonly grant?: Grant;
  /** the Postfix-shaped line the engine logged for this decision */
  readonly logLine: string;
  /**
   * true when the verdict is a failure — a lookup that could not be answered (store, table) or an internal
   * error — rather than a restriction's own reply; front ends with their own temporary action use it
   * (the policy service's tempfail_action). Always a defer.
   */
  readonly failed?: boolean;
  /** header lines (no CRLF) the front end should add to the message: the sunset notice */
  readonly headers?: readonly string[];
  /** the POP-before-SMTP sunset entry that applied to this client's grant */
  readonly sunset?: { readonly key: string; readonly date: string; readonly state: 'notice' | 'ended' };
}

/** How a relayed recipient was allowed: what the migration report counts. */
export type RelayMethod = 'sasl' | 'pop' | 'mynetworks';

/** One permitted relay decision, as the usage log records it. */
export interface UsageEvent {
  readonly method: RelayMethod;
  /** SASL user, the grant's login, or `<sender>` / `[ip]` when the grant has no user (DRAC) */
  readonly user: string;
  readonly ip: string;
  readonly at: number;
}

export interface UsageSink {
  note(e: UsageEvent): void;
}

export interface GrantLookup {
  /** The unexpired grant for `ip` (normalized), or undefined; may throw on a store failure. */
  lookup(ip: string, now: number): Promise<Grant | undefined>;
  /** The same answer without a promise, for stores that can give it at once (LMDB); may throw like lookup. */
  lookupSync?(ip: string, now: number): Grant | undefined;
}

export interface EngineOptions {
  /** Postfix smtpd_relay_restrictions: entries `name` or `name type:table` */
  readonly relayRestrictions: readonly string[];
  /** Postfix smtpd_sender_restrictions */
  readonly senderRestrictions: readonly string[];
  readonly mynetworks: CidrSet;
  readonly mydestination: readonly string[];
  readonly relayDomains: readonly string[];
  /** table specs (`type:name`) mapping a sender address or `@domain` to its owners */
  readonly senderLoginMaps: readonly string[];
  readonly grants: GrantLookup;
  readonly clock: Clock;
  readonly logger: Logger;
  /**
   * What running off the end of the relay list means to the caller. 'permit' (default; Postfix smtpd): the
   * list must be able to refuse. 'dunno' (the Postfix policy service): the caller answers DUNNO and Postfix's
   * own restrictions after check_policy_service (reject_unauth_destination) decide, so the list need not
   * refuse; an unconditional `permit` in it is still refused (every request OK = an open relay through
   * Postfix). The end-of-list decision is then logged at debug as `dunno:` (Postfix logs the final verdict).
   */
  readonly listEnd?: 'permit' | 'dunno';
  /** POP-before-SMTP sunset dates per domain or user (pop_before_smtp_sunset) */
  readonly sunset?: SunsetPolicy | undefined;
  /** receives every permitted RCPT decision's method and user (the daemon's usage log; not `check`) */
  readonly usage?: UsageSink | undefined;
  /** how table specs are opened; defaults to the tables registry (tests inject failing tables) */
  readonly openTable?: (spec: string) => Promise<LookupTable>;
}

export interface Engine {
  decide(req: DecisionRequest): Promise<Decision>;
  /** closes every table the engine opened */
  close(): Promise<void>;
  /** the compiled lists, one canonical entry per restriction */
  describe(): { relay: string[]; sender: string[] };
}
