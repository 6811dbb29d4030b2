// The per-request state a restriction list is evaluated against: the request with its parts parsed once
// (client IP normalized, addresses parsed lazily), the grant looked up at most once, the Postfix state
// flags (warn_if_reject, defer_if_permit, defer_if_reject) and the trace being built.
// Security: this is where "normalize once" happens for the engine: clientIp goes through normalizeIp()
// again (junk becomes an unknown client that matches nothing), addresses through parseAddress().

import { normalizeIp } from '../net/index.ts';
import { clientLabel } from '../log/format.ts';
import type { Grant } from '../store/types.ts';
import type { LookupTable } from '../tables/index.ts';
import { parseAddress, type ParsedAddress } from './address.ts';
import type { DomainList } from './domains.ts';
import { LookupFailure, type Reply } from './outcome.ts';
import type { DecisionRequest, GrantLookup, Stage, TraceEntry } from './types.ts';
import type { CidrSet } from '../net/index.ts';
import type { Logger } from '../log/logger.ts';
import type { SunsetHit, SunsetPolicy } from './sunset.ts';

/** What every compiled restriction may use; built once by createEngine. */
export interface EngineEnv {
  readonly mynetworks: CidrSet;
  readonly mydestination: DomainList;
  readonly relayDomains: DomainList;
  readonly senderLoginMaps: readonly LookupTable[];
  readonly grants: GrantLookup;
  readonly logger: Logger;
  readonly sunset: SunsetPolicy | undefined;
}

/** A remembered reply for defer_if_permit / defer_if_reject, with the entry that armed it. */
export interface ArmedReply {
  readonly reply: Reply;
  readonly by: string;
}

/** A line to log besides the decision line (reject_warning, warn). */
export interface SideLine {
  readonly kind: 'reject_warning' | 'warn';
  readonly what: string;
  readonly restriction: string;
}

const enum GrantState {
  Unknown,
  Known,
  Failed,
}

export class RequestContext {
  readonly stage: Stage;
  readonly now: number;
  /** normalized client address, or undefined when the request carried junk */
  readonly ip: string | undefined;
  /** the address as the request carried it ('' when it was not even a string), for logs when ip is junk */
  readonly rawIp: string;
  /** `unknown` when absent or empty */
  readonly clientName: string;
  readonly saslUser: string | undefined;
  readonly trace: TraceEntry[] = [];
  warnIfReject = false;
  deferIfPermit: ArmedReply | undefined = undefined;
  deferIfReject: ArmedReply | undefined = undefined;
  sideLines: SideLine[] | undefined = undefined;
  /** the sunset entry that applied to the grant: before its date a notice, after it the grant was ignored */
  sunset: { readonly hit: SunsetHit; readonly ended: boolean } | undefined = undefined;

  private senderParsed: ParsedAddress | null | undefined = undefined;
  private recipientParsed: ParsedAddress | null | undefined = undefined;
  private namaddrText: string | undefined = undefined;
  private grantState = GrantState.Unknown;
  private grantValue: Grant | undefined = undefined;
  private grantError: unknown = undefined;

  constructor(
    readonly req: DecisionRequest,
    readonly env: EngineEnv,
    now: number,
  ) {
    this.stage = req.stage;
    this.now = now;
    this.ip = normalizeIp(req.clientIp);
    this.rawIp = typeof req.clientIp === 'string' ? req.clientIp : '';
    this.clientName = req.clientName === undefined || req.clientName === '' ? 'unknown' : req.clientName;
    this.saslUser = req.saslUser === undefined || req.saslUser === '' ? undefined : req.saslUser;
  }

  /** Postfix's `name[addr]`, escaped; the raw text is shown when the address was junk. */
  get namaddr(): string {
    return (this.namaddrText ??= clientLabel(this.ip ?? this.rawIp, this.clientName));
  }

  /** The parsed sender, or undefined when the request has none (`''` parses as the null sender). */
  sender(): ParsedAddress | undefined {
    if (this.senderParsed === undefined) this.senderParsed = this.req.sender === undefined ? null : parseAddress(this.req.sender);
    return this.senderParsed ?? undefined;
  }

  recipient(): ParsedAddress | undefined {
    if (this.recipientParsed === undefined) this.recipientParsed = this.req.recipient === undefined ? null : parseAddress(this.req.recipient);
    return this.recipientParsed ?? undefined;
  }

  /** What generic replies name at this stage: the recipient at RCPT, the sender at MAIL (Postfix reply_name). */
  get replyName(): string {
    return (this.stage === 'rcpt' ? this.recipient() : this.sender())?.raw ?? '';
  }

  get replyClass(): string {
    return this.stage === 'rcpt' ? 'Recipient address' : 'Sender address';
  }

  /** The grant the request's IP holds, if any; the store is asked at most once per request. */
  grant(): Grant | undefined | Promise<Grant | undefined> {
    if (this.grantState === GrantState.Known) return this.grantValue;
    if (this.grantState === GrantState.Failed) throw this.grantError;
    if (this.ip === undefined) {
      this.grantState = GrantState.Known;
      return undefined;
    }
    const grants = this.env.grants;
    if (grants.lookupSync === undefined) return this.fetchGrant(this.ip);
    // a store that answers at once (LMDB): no promise on the hot path
    try {
      const g = grants.lookupSync(this.ip, this.now);
      this.grantValue = g;
      this.grantState = GrantState.Known;
      return g;
    } catch (err) {
      throw this.lookupFailed(this.ip, err);
    }
  }

  /** The grant, if it was looked up and found (for Decision.grant). */
  get knownGrant(): Grant | undefined {
    return this.grantValue;
  }

  private async fetchGrant(ip: string): Promise<Grant | undefined> {
    try {
      const g = await this.env.grants.lookup(ip, this.now);
      this.grantValue = g;
      this.grantState = GrantState.Known;
      return g;
    } catch (err) {
      throw this.lookupFailed(ip, err);
    }
  }

  private lookupFailed(ip: string, err: unknown): LookupFailure {
    const f = new LookupFailure(this.namaddr, `access map lookup of ${ip} failed: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    this.grantError = f;
    this.grantState = GrantState.Failed;
    return f;
  }

  /**
   * The login a sender-login check compares with: the SASL user, else the user of the client's grant
   * (POP-before-SMTP). A grant without a user (DRAC) is "not logged in".
   */
  login(): string | undefined | Promise<string | undefined> {
    if (this.saslUser !== undefined) return this.saslUser;
    const g = this.grant();
    if (g instanceof Promise) return g.then((x) => x?.user ?? undefined);
    return g?.user ?? undefined;
  }

  /** One table lookup; a failing table becomes a LookupFailure naming `subject`. */
  async lookup(table: LookupTable, key: string, subject: string): Promise<string | undefined> {
    try {
      return await table.get(key);
    } catch (err) {
      let why = (err as Error)?.message ?? String(err);
      if (why.startsWith(`${table.spec}: `)) why = why.slice(table.spec.length + 2);
      throw new LookupFailure(subject, `${table.spec}: lookup of ${JSON.stringify(key)} failed: ${why}`, { cause: err });
    }
  }

  addSideLine(line: SideLine): void {
    (this.sideLines ??= []).push(line);
  }
}
