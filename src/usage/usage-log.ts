// The usage log: for every user, how they relayed (SASL, POP-before-SMTP, mynetworks), when first and last,
// how many recipients, and from which client IPs; plus per-day totals per method for the status page chart.
// It is what `relaygate report` reads to tell who still depends on POP-before-SMTP.
//
// Storage: its own small LMDB environment in `<data_dir>/usage` (local to this node even when the access
// map is on Redis: each SMTP node reports the relaying it saw). The engine calls note() for every permitted
// RCPT; note() only aggregates in memory, and flush() (every few seconds, when many users are pending, and at
// stop) merges the aggregate into LMDB in one transaction. A crash loses at most the last few seconds of
// counts, never a grant or a decision. Memory is bounded: past MAX_PENDING distinct users a flush starts.
// Daily totals older than KEEP_DAYS are pruned.
// Security: user names come from SASL logins, POP logins in logs and envelope senders; they are stored as
// given (capped) and escaped by whoever prints them (report, status page).

import { open as openLmdb, type Database, type RootDatabase } from 'lmdb';
import { mkdir } from 'node:fs/promises';
import { RelaygateError } from '../errors.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log/logger.ts';
import type { RelayMethod, UsageEvent, UsageSink } from '../engine/types.ts';

export const RELAY_METHODS: readonly RelayMethod[] = ['sasl', 'pop', 'mynetworks'];
const MAX_USER = 256;
const MAX_IPS = 8;
const MAX_PENDING = 20_000;
export const KEEP_DAYS = 400;
const DEFAULT_FLUSH_MS = 5_000;

/** One user's use of one relay method. */
export interface MethodUsage {
  readonly first: number;
  readonly last: number;
  readonly count: number;
  /** most recent first, at most MAX_IPS */
  readonly ips: readonly string[];
}

export interface UserUsage {
  readonly user: string;
  readonly methods: Partial<Record<RelayMethod, MethodUsage>>;
}

export interface DayUsage {
  /** YYYY-MM-DD (UTC) */
  readonly day: string;
  readonly counts: Record<RelayMethod, number>;
}

interface Pending {
  first: number;
  last: number;
  count: number;
  ips: string[];
}

export function dayOf(ms: number): string {
  // every permitted RCPT asks: the current day's name is kept instead of formatting a date each time
  if (ms >= dayCache.start && ms < dayCache.start + DAY_MS) return dayCache.text;
  const text = new Date(ms).toISOString().slice(0, 10);
  if (Number.isFinite(ms)) dayCache = { start: ms - (((ms % DAY_MS) + DAY_MS) % DAY_MS), text };
  return text;
}

const DAY_MS = 86_400_000;
let dayCache = { start: Number.NaN, text: '' };

function userKey(method: RelayMethod, user: string): string {
  return `u\u0000${method}\u0000${user}`;
}

function dayKey(day: string, method: RelayMethod): string {
  return `d\u0000${day}\u0000${method}`;
}

/** Newest first, deduplicated, at most MAX_IPS. */
function mergeIps(newer: readonly string[], older: readonly string[]): string[] {
  const out: string[] = [];
  for (const ip of [...newer, ...older]) {
    if (!out.includes(ip)) out.push(ip);
    if (out.length === MAX_IPS) break;
  }
  return out;
}

export class UsageLog implements UsageSink {
  private readonly pending = new Map<string, Pending>();
  private readonly pendingDays = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private closed = false;
  private lastPrune = '';

  private constructor(
    readonly path: string,
    private readonly root: RootDatabase,
    private readonly db: Database<unknown, string>,
    private readonly clock: Clock,
    private readonly logger: Logger,
    flushMs: number,
  ) {
    if (flushMs > 0) {
      this.timer = setInterval(() => void this.flush(), flushMs);
      this.timer.unref();
    }
  }

  /** Opens (creating) the usage log at `path`; `flushMs` 0 disables the timer (tests, one-shot commands). */
  static async open(path: string, opts: { clock: Clock; logger: Logger; flushMs?: number }): Promise<UsageLog> {
    let root: RootDatabase;
    try {
      await mkdir(path, { recursive: true, mode: 0o750 });
      root = openLmdb({ path, noSubdir: false, maxDbs: 2 });
    } catch (err) {
      throw new RelaygateError('RG_ERR_STORE_OPEN', `usage log ${path}: cannot open it (${(err as Error).message})`, {
        cause: err,
        details: ['data_dir must be writable by the relaygate user; the usage log can be deleted safely (only the migration report loses its history)'],
      });
    }
    const db = root.openDB<unknown, string>({ name: 'usage', encoding: 'json' });
    return new UsageLog(path, root, db, opts.clock, opts.logger, opts.flushMs ?? DEFAULT_FLUSH_MS);
  }

  note(e: UsageEvent): void {
    if (this.closed) return;
    const user = e.user.length > MAX_USER ? e.user.slice(0, MAX_USER) : e.user;
    const k = userKey(e.method, user);
    const p = this.pending.get(k);
    if (p === undefined) this.pending.set(k, { first: e.at, last: e.at, count: 1, ips: [e.ip] });
    else {
      p.first = Math.min(p.first, e.at);
      p.last = Math.max(p.last, e.at);
      p.count++;
      if (p.ips[0] !== e.ip) p.ips = mergeIps([e.ip], p.ips);
    }
    const dk = dayKey(dayOf(e.at), e.method);
    this.pendingDays.set(dk, (this.pendingDays.get(dk) ?? 0) + 1);
    if (this.pending.size >= MAX_PENDING) void this.flush();
  }

  /** Merges what note() gathered into LMDB (one transaction); flushes never overlap. */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.flushNow());
    return this.flushing;
  }

  private async flushNow(): Promise<void> {
    if (this.pending.size === 0 && this.pendingDays.size === 0) return;
    const users = [...this.pending];
    const days = [...this.pendingDays];
    this.pending.clear();
    this.pendingDays.clear();
    const today = dayOf(this.clock());
    const prune = today !== this.lastPrune;
    try {
      await this.root.transaction(() => {
        for (const [k, p] of users) {
          const old = this.db.get(k) as MethodUsage | undefined;
          const next: MethodUsage =
            old === undefined || typeof old !== 'object'
              ? { first: p.first, last: p.last, count: p.count, ips: p.ips }
              : {
                  first: Math.min(old.first, p.first),
                  last: Math.max(old.last, p.last),
                  count: old.count + p.count,
                  ips: p.last >= old.last ? mergeIps(p.ips, old.ips ?? []) : mergeIps(old.ips ?? [], p.ips),
                };
          this.db.putSync(k, next);
        }
        for (const [k, n] of days) {
          const old = this.db.get(k);
          this.db.putSync(k, (typeof old === 'number' ? old : 0) + n);
        }
        if (prune) {
          const oldest = dayOf(this.clock() - KEEP_DAYS * 86_400_000);
          for (const key of this.db.getKeys({ start: 'd\u0000', end: `d\u0000${oldest}` })) this.db.removeSync(key);
        }
      });
      if (prune) this.lastPrune = today;
    } catch (err) {
      // Counts only: put them back for the next flush rather than lose them, and say so.
      for (const [k, p] of users) if (!this.pending.has(k)) this.pending.set(k, p);
      for (const [k, n] of days) this.pendingDays.set(k, (this.pendingDays.get(k) ?? 0) + n);
      this.logger.warn({ event: 'usage_flush_failed', path: this.path, err }, `usage log: flush failed (${(err as Error).message}); retrying at the next flush`);
    }
  }

  /** Every user with every method they used. */
  users(): UserUsage[] {
    const byUser = new Map<string, Partial<Record<RelayMethod, MethodUsage>>>();
    for (const { key, value } of this.db.getRange({ start: 'u\u0000', end: 'u\u0001' })) {
      const [, method, user] = key.split('\u0000') as [string, RelayMethod, string];
      if (!RELAY_METHODS.includes(method) || typeof value !== 'object' || value === null) continue;
      const m = byUser.get(user) ?? {};
      m[method] = value as MethodUsage;
      byUser.set(user, m);
    }
    return [...byUser].map(([user, methods]) => ({ user, methods }));
  }

  /** Per-day totals for the `n` days ending today (UTC), oldest first, days without relaying as zeros. */
  days(n: number): DayUsage[] {
    const now = this.clock();
    const out: DayUsage[] = [];
    for (let i = n - 1; i >= 0; i--) {
      const day = dayOf(now - i * 86_400_000);
      const counts = { sasl: 0, pop: 0, mynetworks: 0 };
      for (const m of RELAY_METHODS) {
        const v = this.db.get(dayKey(day, m));
        if (typeof v === 'number') counts[m] = v;
      }
      out.push({ day, counts });
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    if (this.timer !== undefined) clearInterval(this.timer);
    await this.flush();
    this.closed = true;
    await this.root.close();
  }
}
