// Brute-force defence for SMTP AUTH: failed attempts counted per client IP and per username in sliding
// windows, a growing delay on each failure, and a lockout (`421 4.7.0` + disconnect) per client IP.
//
// How the SMTP front end uses it (one AUTH exchange):
//   check(ip, user)  → 'block' (locked out: 421 4.7.0, disconnect) or 'allow'. check() never delays, so a
//                      correct password is never slowed down ("successes are not slowed").
//   authenticate...  → ok:       succeed(ip, user), 235.
//                      fail:     fail(ip, user) → 'allow' (535 now), 'delay' (wait ms, then 535) or 'block'
//                                (this failure reached the limit: 421 4.7.0 and disconnect).
//                      tempfail: nothing is counted (a backend outage is not the client's doing), 454.
//
// Decisions (anvil/Dovecot-penalty-like):
// - Delay: the first `freeFailures` failures (a typo) cost nothing; then `baseDelayMs` doubling per failure up
//   to `maxDelayMs`. The count used is the larger of the IP's and the username's failures in the window, so
//   an attack spread over many IPs against one account is slowed too.
// - Lockout is per IP only: `maxFailures` failures from one IP within `window` block that IP for `lockout`.
//   Usernames are never locked out, because anyone could then lock a real user out of mail by failing on
//   purpose; a username's failures only grow the delay.
// - succeed(ip, user) forgives that user's own failures: its username counter is cleared and the IP's
//   failures *for that username* are removed. The IP's failures for other usernames stay, so one valid
//   account cannot launder a brute force of others from the same IP; an office behind one NAT address is
//   not locked out by a colleague's earlier typos once that colleague gets in.
// - Bounded memory: at most `maxEntries` IPs and `maxEntries` usernames; every record keeps at most
//   `maxFailures` (IP) or a few dozen (username) timestamps; expired records are dropped as they are met, and
//   when full the least recently touched record is evicted. A flood of distinct IPs therefore costs O(maxEntries)
//   memory at most (and can at worst evict an old lockout early: a bounded table cannot keep everything).
//
// Security: IPs must be normalized (normalizeIp) by the caller, so `::ffff:192.0.2.1` and `192.0.2.1` share
// one record. Usernames are keyed lower-cased and cut at 256 characters; they are never logged from here.

import type { Clock } from '../clock.ts';

export interface ThrottleOptions {
  /** failures from one IP within `window` that lock it out (default 5) */
  readonly maxFailures: number;
  /** sliding window, ms (default 10 min) */
  readonly window: number;
  /** lockout length, ms (default 15 min) */
  readonly lockout: number;
  /** failures that cost no delay (default 1) */
  readonly freeFailures: number;
  /** delay after the first non-free failure, ms; doubles per further failure (default 1000) */
  readonly baseDelayMs: number;
  /** delay cap, ms (default 30000) */
  readonly maxDelayMs: number;
  /** at most this many IP records and this many username records (default 100000) */
  readonly maxEntries: number;
}

export const THROTTLE_DEFAULTS: ThrottleOptions = Object.freeze({
  maxFailures: 5,
  window: 10 * 60_000,
  lockout: 15 * 60_000,
  freeFailures: 1,
  baseDelayMs: 1000,
  maxDelayMs: 30_000,
  maxEntries: 100_000,
});

export type ThrottleVerdict = { readonly action: 'allow' } | { readonly action: 'delay'; readonly ms: number } | { readonly action: 'block'; readonly until: number };

interface IpRecord {
  /** recent failures, oldest first, at most maxFailures */
  fails: Array<{ at: number; user: string | undefined }>;
  blockedUntil: number;
}

interface UserRecord {
  fails: number[];
}

const ALLOW: ThrottleVerdict = Object.freeze({ action: 'allow' });
const SCAN_PER_INSERT = 64;

function userKey(user: string | undefined): string | undefined {
  if (user === undefined || user === '') return undefined;
  return user.slice(0, 256).toLowerCase();
}

export class AuthThrottle {
  readonly options: ThrottleOptions;
  private readonly clock: Clock;
  private readonly ips = new Map<string, IpRecord>();
  private readonly users = new Map<string, UserRecord>();
  private readonly userCap: number;

  constructor(clock: Clock, options: Partial<ThrottleOptions> = {}) {
    const o = { ...THROTTLE_DEFAULTS, ...options };
    for (const [k, v] of Object.entries(o)) {
      if (!Number.isFinite(v) || v < 0 || !Number.isInteger(v)) throw new RangeError(`AuthThrottle: ${k} must be a non-negative integer`);
    }
    if (o.maxFailures < 1 || o.maxEntries < 1) throw new RangeError('AuthThrottle: maxFailures and maxEntries must be at least 1');
    this.options = Object.freeze(o);
    this.clock = clock;
    // past freeFailures + log2(maxDelay/base) + 1 the delay no longer grows; keep a little more than that
    this.userCap = Math.max(o.maxFailures, o.freeFailures + 40);
  }

  /** Before an AUTH: 'block' while the IP is locked out, else 'allow' (never a delay: see the header). */
  check(ip: string, _user?: string): ThrottleVerdict {
    const rec = this.ips.get(ip);
    const now = this.clock();
    if (rec && rec.blockedUntil > now) return { action: 'block', until: rec.blockedUntil };
    return ALLOW;
  }

  /** Records a failed AUTH and says how to answer it. */
  fail(ip: string, user?: string): ThrottleVerdict {
    const now = this.clock();
    const u = userKey(user);
    const rec = this.touchIp(ip, now);
    if (rec.blockedUntil > now) return { action: 'block', until: rec.blockedUntil };
    rec.fails.push({ at: now, user: u });
    this.prune(rec.fails, now, (f) => f.at);
    if (rec.fails.length > this.options.maxFailures) rec.fails.splice(0, rec.fails.length - this.options.maxFailures);
    if (rec.fails.length >= this.options.maxFailures) {
      rec.blockedUntil = now + this.options.lockout;
      rec.fails = [];
      return { action: 'block', until: rec.blockedUntil };
    }
    let count = rec.fails.length;
    if (u !== undefined) {
      const ur = this.touchUser(u, now);
      ur.fails.push(now);
      this.prune(ur.fails, now, (t) => t);
      if (ur.fails.length > this.userCap) ur.fails.splice(0, ur.fails.length - this.userCap);
      count = Math.max(count, ur.fails.length);
    }
    const ms = this.delayFor(count);
    return ms > 0 ? { action: 'delay', ms } : ALLOW;
  }

  /** Records a successful AUTH: forgives that username's failures (see the header), keeps any lockout. */
  succeed(ip: string, user?: string): void {
    const u = userKey(user);
    if (u === undefined) return;
    this.users.delete(u);
    const rec = this.ips.get(ip);
    if (rec) rec.fails = rec.fails.filter((f) => f.user !== u);
  }

  /** The delay for the n-th failure in the window. */
  delayFor(n: number): number {
    const { freeFailures, baseDelayMs, maxDelayMs } = this.options;
    if (n <= freeFailures) return 0;
    const exp = Math.min(n - freeFailures - 1, 30);
    return Math.min(maxDelayMs, baseDelayMs * 2 ** exp);
  }

  /** Drops every expired record; cheap enough to run from a timer (the SMTP front end's sweeper). */
  sweep(): void {
    const now = this.clock();
    for (const [k, r] of this.ips) if (this.ipExpired(r, now)) this.ips.delete(k);
    for (const [k, r] of this.users) if (this.userExpired(r, now)) this.users.delete(k);
  }

  /** Number of IP and username records held (for metrics and tests). */
  get size(): { ips: number; users: number } {
    return { ips: this.ips.size, users: this.users.size };
  }

  private prune<T>(list: T[], now: number, at: (x: T) => number): void {
    const from = now - this.options.window;
    let i = 0;
    while (i < list.length && at(list[i]!) <= from) i++;
    if (i > 0) list.splice(0, i);
  }

  private ipExpired(r: IpRecord, now: number): boolean {
    return r.blockedUntil <= now && (r.fails.length === 0 || r.fails[r.fails.length - 1]!.at <= now - this.options.window);
  }

  private userExpired(r: UserRecord, now: number): boolean {
    return r.fails.length === 0 || r.fails[r.fails.length - 1]! <= now - this.options.window;
  }

  private touchIp(ip: string, now: number): IpRecord {
    let r = this.ips.get(ip);
    if (r) {
      this.ips.delete(ip); // re-insert: Map order is then least recently touched first
    } else {
      this.makeRoom(this.ips, (x) => this.ipExpired(x, now));
      r = { fails: [], blockedUntil: 0 };
    }
    this.ips.set(ip, r);
    return r;
  }

  private touchUser(u: string, now: number): UserRecord {
    let r = this.users.get(u);
    if (r) {
      this.users.delete(u);
    } else {
      this.makeRoom(this.users, (x) => this.userExpired(x, now));
      r = { fails: [] };
    }
    this.users.set(u, r);
    return r;
  }

  /** Before adding to a full map: drop expired records among the oldest, else evict the oldest. */
  private makeRoom<V>(map: Map<string, V>, expired: (v: V) => boolean): void {
    if (map.size < this.options.maxEntries) return;
    let scanned = 0;
    for (const [k, v] of map) {
      if (scanned++ >= SCAN_PER_INSERT || map.size < this.options.maxEntries) break;
      if (expired(v)) map.delete(k);
    }
    while (map.size >= this.options.maxEntries) {
      const oldest = map.keys().next();
      if (oldest.done) break;
      map.delete(oldest.value);
    }
  }
}
