// Per-source rate limit for the network feeds (DRAC, whoson): a token bucket per caller IP.
//
// Bounded: at most `maxSources` buckets are kept. When the table is full, buckets that have refilled
// completely (idle sources) are dropped, at most once a second; if it is still full (a flood from many
// spoofed UDP sources), the newcomers share one overflow bucket, so memory stays bounded and the
// sources already known keep their own budget.
// Refusals are reported for logging at most once per second per source, with the count since the last
// report, so a flood cannot turn into a flood of log lines.
// Security: the key is the peer address the kernel reports (after normalizeIp); nothing in a request
// chooses its bucket.

import type { Clock } from '../clock.ts';

export interface RateLimiterOptions {
  /** sustained requests per second per source */
  readonly rate: number;
  /** bucket size: requests a quiet source may send at once (default: one second's worth) */
  readonly burst?: number;
  /** most sources tracked at once (default 10,000) */
  readonly maxSources?: number;
  readonly clock: Clock;
}

interface Bucket {
  tokens: number;
  last: number;
  dropped: number;
  reportedAt: number;
}

export type RateDecision = { readonly ok: true } | { readonly ok: false; /** > 0: log now, this many refusals since the last report */ readonly report: number };

const OVERFLOW = '*overflow*';
const REPORT_EVERY_MS = 1000;

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly burst: number;
  private readonly maxSources: number;
  private lastPrune = -Infinity;

  constructor(private readonly opts: RateLimiterOptions) {
    this.burst = Math.max(1, opts.burst ?? opts.rate);
    this.maxSources = opts.maxSources ?? 10_000;
  }

  get size(): number {
    return this.buckets.size;
  }

  take(source: string): RateDecision {
    const now = this.opts.clock();
    const b = this.bucket(source, now);
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.last) / 1000) * this.opts.rate);
    b.last = now;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return { ok: true };
    }
    b.dropped++;
    if (now - b.reportedAt >= REPORT_EVERY_MS) {
      const report = b.dropped;
      b.dropped = 0;
      b.reportedAt = now;
      return { ok: false, report };
    }
    return { ok: false, report: 0 };
  }

  private bucket(source: string, now: number): Bucket {
    let b = this.buckets.get(source);
    if (b !== undefined) return b;
    if (this.buckets.size >= this.maxSources) this.prune(now);
    if (this.buckets.size >= this.maxSources) {
      b = this.buckets.get(OVERFLOW);
      if (b !== undefined) return b;
      source = OVERFLOW; // the overflow bucket may exceed maxSources by this one entry
    }
    b = { tokens: this.burst, last: now, dropped: 0, reportedAt: -Infinity };
    this.buckets.set(source, b);
    return b;
  }

  private prune(now: number): void {
    if (now - this.lastPrune < 1000) return;
    this.lastPrune = now;
    for (const [k, b] of this.buckets) {
      if (b.tokens + ((now - b.last) / 1000) * this.opts.rate >= this.burst) this.buckets.delete(k);
    }
  }
}
