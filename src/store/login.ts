// Checking one login before any backend stores it: the part of "record a grant" that does not depend on
// where grants live. The Redis store uses it; the rules are the LMDB store's (lmdb-map.ts `prepare`), and
// test/store/contract.ts holds both backends to the same table of cases.
//
// Security: every field of a LoginEvent is untrusted (log lines, network feeds). The IP goes through
// normalizeIp() (junk refused), mynetworks and never_authorize are never recorded, a login time in the
// future counts as now (a skewed or hostile feed cannot stretch a grant past its ttl), non-finite or
// out-of-range times are refused per event, and texts are length-capped before they are stored.

import { normalizeIp, type CidrSet } from '../net/index.ts';
import type { LoginEvent, RefusalReason } from './types.ts';

/** Longest user / service / source stored, in UTF-16 units (the LMDB store's MAX_TEXT). */
export const MAX_TEXT = 256;

/** A login that may become (or refresh) a grant. */
export interface PreparedLogin {
  readonly ip: string;
  readonly login: LoginEvent;
  /** login time, clamped to now, whole ms */
  readonly at: number;
  /** at + ttl, whole ms, > now */
  readonly expires: number;
  /** capped texts: null for absent or empty user / service */
  readonly user: string | null;
  readonly service: string | null;
  readonly source: string;
}

export interface LoginRefusal {
  readonly reason: RefusalReason;
  readonly detail: string;
  /** routine refusals (mynetworks, stale) are debug; source bugs and junk are warnings */
  readonly level: 'debug' | 'warn';
}

export interface LoginRules {
  /** default grant lifetime in seconds */
  readonly grace: number;
  readonly mynetworks: CidrSet;
  readonly neverAuthorize: CidrSet;
}

export function capText(s: string | undefined | null): string | null {
  if (s === undefined || s === null || s === '') return null;
  return s.length > MAX_TEXT ? s.slice(0, MAX_TEXT) : s;
}

/** A value shown inside a log message or error: quoted, at most 64 characters. */
export function shownValue(input: unknown): string {
  const s = typeof input === 'string' ? input : String(input);
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}…` : s);
}

/** ISO time, or the raw number when it lies outside Date's range (toISOString would throw). */
function iso(t: number): string {
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? `${t} ms` : d.toISOString();
}

export function prepareLogin(login: LoginEvent, now: number, rules: LoginRules): PreparedLogin | LoginRefusal {
  const ip = typeof login.ip === 'string' ? normalizeIp(login.ip) : undefined;
  if (ip === undefined) return { reason: 'bad_ip', detail: `invalid client address ${shownValue(login.ip)} from ${login.source}: expected a literal IPv4 or IPv6 address`, level: 'warn' };
  const mine = rules.mynetworks.match(ip);
  if (mine) return { reason: 'mynetworks', detail: `${ip} is inside mynetworks (${mine.text}) and needs no grant`, level: 'debug' };
  const never = rules.neverAuthorize.match(ip);
  if (never) return { reason: 'never_authorize', detail: `${ip} is inside never_authorize (${never.text})`, level: 'debug' };
  const rawAt = login.at ?? now;
  const ttl = login.ttl ?? rules.grace;
  if (typeof rawAt !== 'number' || !Number.isFinite(rawAt) || typeof ttl !== 'number' || !Number.isFinite(ttl)) {
    return { reason: 'bad_time', detail: `login time ${shownValue(rawAt)} or ttl ${shownValue(ttl)} from ${login.source} is not a finite number`, level: 'warn' };
  }
  const at = Math.floor(Math.min(rawAt, now));
  const expires = Math.floor(at + ttl * 1000);
  if (!Number.isSafeInteger(expires) || !Number.isSafeInteger(at)) return { reason: 'bad_time', detail: `ttl ${shownValue(ttl)} from ${login.source} is out of range`, level: 'warn' };
  if (expires <= now) return { reason: 'stale', detail: `login of ${ip} at ${iso(at)} expired at ${iso(expires)}, before now`, level: 'debug' };
  return { ip, login, at, expires, user: capText(login.user), service: capText(login.service), source: capText(login.source) ?? '' };
}

export function isRefusal(p: PreparedLogin | LoginRefusal): p is LoginRefusal {
  return 'reason' in p;
}
