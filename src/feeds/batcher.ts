// Micro-batching of feed logins into the access map: every login submitted during one turn of the event
// loop is written in one recordMany() transaction, and each caller's promise resolves with its own result
// once that transaction committed (so a DRAC or whoson client is told "done" only for a durable grant).
// Up to `maxInFlight` transactions are in flight; beyond that new logins gather for the next one, so under
// load batches grow by themselves. (lmdb-js commits transactions queued behind a commit in one LMDB
// commit: measured here, 2 in flight wrote ~4× the logins/s of 1 — one fsync for several batches.)
//
// Bounded: at most `maxQueue` logins wait; beyond that submit() answers 'overloaded' at once (the feed
// replies with a temporary error and the client retries) instead of letting memory grow.
// Security: passes LoginEvents through unchanged; the store re-checks every address (normalizeIp,
// mynetworks, never_authorize).

import type { AccessMap, LoginEvent, RecordResult } from '../store/index.ts';

export interface BatcherOptions {
  /** most logins per transaction (default 512) */
  readonly maxBatch?: number;
  /** most logins waiting, in flight included (default 4096) */
  readonly maxQueue?: number;
  /** most transactions in flight (default 4): lmdb-js commits the ones queued behind a commit together */
  readonly maxInFlight?: number;
}

interface Waiting {
  readonly login: LoginEvent;
  readonly resolve: (r: RecordResult | 'overloaded') => void;
  readonly reject: (err: unknown) => void;
}

export class LoginBatcher {
  private queue: Waiting[] = [];
  private inFlightLogins = 0;
  private readonly writes = new Set<Promise<void>>();
  private scheduled = false;
  private readonly maxBatch: number;
  private readonly maxQueue: number;
  private readonly maxInFlight: number;

  constructor(
    private readonly map: AccessMap,
    opts: BatcherOptions = {},
  ) {
    this.maxBatch = opts.maxBatch ?? 512;
    this.maxQueue = opts.maxQueue ?? 4096;
    this.maxInFlight = opts.maxInFlight ?? 4;
  }

  /** Resolves with the store's result, or 'overloaded'; rejects when the store write failed. */
  submit(login: LoginEvent): Promise<RecordResult | 'overloaded'> {
    if (this.queue.length + this.inFlightLogins >= this.maxQueue) return Promise.resolve('overloaded');
    return new Promise((resolve, reject) => {
      this.queue.push({ login, resolve, reject });
      this.schedule();
    });
  }

  /** Waits until every login submitted so far has been written (or failed). */
  async drain(): Promise<void> {
    for (let i = 0; i < 1_000_000 && (this.writes.size > 0 || this.queue.length > 0); i++) {
      this.flush();
      await Promise.all(this.writes);
    }
  }

  private schedule(): void {
    if (this.scheduled || this.writes.size >= this.maxInFlight) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.queue.length > 0 && this.writes.size < this.maxInFlight) {
      const batch = this.queue.length <= this.maxBatch ? this.queue : this.queue.slice(0, this.maxBatch);
      this.queue = this.queue.length <= this.maxBatch ? [] : this.queue.slice(this.maxBatch);
      this.inFlightLogins += batch.length;
      const write: Promise<void> = this.map
        .recordMany(batch.map((w) => w.login))
        .then(
          (results) => batch.forEach((w, i) => w.resolve(results[i]!)),
          (err: unknown) => batch.forEach((w) => w.reject(err)),
        )
        .finally(() => {
          this.inFlightLogins -= batch.length;
          this.writes.delete(write);
          if (this.queue.length > 0) this.schedule();
        });
      this.writes.add(write);
    }
  }
}
