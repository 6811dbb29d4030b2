// The migration report: who still relays on POP-before-SMTP, and whether they have started using SMTP AUTH.
// Pure functions over the usage log's records, shared by `relaygate report` and the status page.

import type { SunsetHit, SunsetPolicy } from '../engine/sunset.ts';
import type { MethodUsage, UserUsage } from './usage-log.ts';

export interface PopDependent {
  readonly user: string;
  readonly firstPop: number;
  readonly lastPop: number;
  readonly popCount: number;
  readonly ips: readonly string[];
  /** last SMTP AUTH relay by the same name, or null: a user with both is migrating */
  readonly lastSasl: number | null;
  /** the sunset entry that applies to this user, or null */
  readonly sunset: SunsetHit | null;
}

/**
 * Users whose last POP-before-SMTP relay is within `days` days of `now`, most recent first.
 * A name in `<...>` or `[...]` is a sender address or client IP (the grant had no user: DRAC, whoson).
 */
export function popDependents(users: readonly UserUsage[], o: { now: number; days: number; sunset?: SunsetPolicy | undefined }): PopDependent[] {
  const since = o.now - o.days * 86_400_000;
  const out: PopDependent[] = [];
  for (const u of users) {
    const pop: MethodUsage | undefined = u.methods.pop;
    if (pop === undefined || pop.last < since) continue;
    const login = u.user.startsWith('<') || u.user.startsWith('[') ? undefined : u.user;
    const sender = u.user.startsWith('<') && u.user.endsWith('>') ? u.user.slice(1, -1) : login?.includes('@') ? login : undefined;
    out.push({
      user: u.user,
      firstPop: pop.first,
      lastPop: pop.last,
      popCount: pop.count,
      ips: pop.ips,
      lastSasl: u.methods.sasl?.last ?? null,
      sunset: o.sunset?.match(login, sender) ?? null,
    });
  }
  return out.sort((a, b) => b.lastPop - a.lastPop || (a.user < b.user ? -1 : 1));
}
