// The access map contract: what every store (LMDB embedded, Redis shared) provides.
//
// A grant says "this client IP proved itself recently": it was seen logging in to POP3/IMAP (or was fed
// by a trusted network source) and may relay until `expires`. Times are ms since the epoch (see clock.ts).
// Security: `ip` is always normalizeIp() output; `user` is whatever the source saw and is only used for
// sender-login checks and logs, never to widen trust.

/** One successful login, as a source reports it. */
export interface LoginEvent {
  /** client address; the store normalizes it again and refuses junk */
  readonly ip: string;
  /** login name, when the source knows it (DRAC does not) */
  readonly user?: string | undefined;
  /** pop3, imap, submission, ... */
  readonly service?: string | undefined;
  /** which watcher or feed saw it, e.g. `dovecot:/var/log/mail.log`, `drac`, `cli` */
  readonly source: string;
  /** when the login happened (ms); defaults to the store's clock */
  readonly at?: number | undefined;
  /** grant lifetime override in seconds (feeds may send one); defaults to `grace` */
  readonly ttl?: number | undefined;
}

export interface Grant {
  readonly ip: string;
  readonly user: string | null;
  readonly service: string | null;
  readonly source: string;
  readonly firstSeen: number;
  readonly lastSeen: number;
  readonly expires: number;
  readonly count: number;
}

export type RecordResult =
  | { readonly recorded: true; readonly grant: Grant }
  | { readonly recorded: false; readonly reason: RefusalReason; readonly detail: string };

/**
 * Why a login did not become a grant. `bad_time`: its `at` or `ttl` is not a finite number (or is out of
 * range) — a source bug, refused per event so one bad event does not fail a whole batch.
 */
export type RefusalReason = 'mynetworks' | 'never_authorize' | 'bad_ip' | 'bad_time' | 'stale';

/** What a conditional batch (recordManyIf) did: logins recorded, logins refused (each refusal is logged). */
export interface BatchOutcome {
  readonly recorded: number;
  readonly refused: number;
}

export interface MapStats {
  /** grants currently valid (unexpired at `now`) */
  readonly active: number;
  /** entries still stored though expired (awaiting the sweep) */
  readonly expiredPending: number;
  /** earliest / latest expiry among the active grants (null when none is active) */
  readonly oldestExpiry: number | null;
  readonly newestExpiry: number | null;
  /** totals since the store was opened */
  readonly recorded: number;
  readonly refused: number;
  readonly swept: number;
  readonly lastSweepAt: number | null;
  readonly lastSweepMs: number | null;
  readonly backend: string;
}

export interface AccessMap {
  /** Record (or refresh, sliding the expiry) a grant for the login's IP. */
  record(login: LoginEvent): Promise<RecordResult>;
  /**
   * Record many logins in one transaction (sources batch bursts). `state` entries (a source's position)
   * are written in the same transaction, so a crash can neither lose nor repeat the batch.
   */
  recordMany(logins: readonly LoginEvent[], state?: Readonly<Record<string, unknown>>): Promise<RecordResult[]>;
  /**
   * Optional (a backend that has it lets a log watcher keep several batches in flight): recordMany, but
   * only if every key of `expect` holds exactly that state (`undefined`: none) when the transaction runs;
   * otherwise nothing is written and it rejects with RG_ERR_STORE_IO. The write is queued before the call
   * returns, so batches handed over one after the other commit in that order. A tailer passes the position
   * its previous batch saved: if that batch failed, no later batch can commit a position past its lines.
   * Answers counts, not a grant per login: watchers only count (and building them cost ~5% of an ingest).
   * Wrappers that do not pass it through must not offer it (a watcher then waits for each batch).
   */
  recordManyIf?(logins: readonly LoginEvent[], state: Readonly<Record<string, unknown>>, expect: Readonly<Record<string, unknown>>): Promise<BatchOutcome>;
  /** A source's saved state (file position, journald cursor), or undefined. */
  getState(key: string): Promise<unknown>;
  setState(key: string, value: unknown): Promise<void>;
  /** The unexpired grant for `ip` (already normalized), or undefined. Expired = absent, even before a sweep. */
  lookup(ip: string, now?: number): Promise<Grant | undefined>;
  /** lookup() answered at once, for stores that need no waiting (LMDB: an mmap read); throws like lookup. */
  lookupSync?(ip: string, now?: number): Grant | undefined;
  /** Remove a grant; true when one existed. */
  delete(ip: string): Promise<boolean>;
  /** All unexpired grants, ordered by IP. */
  list(now?: number): Promise<Grant[]>;
  /** Remove every grant expired at `now`; returns how many. O(expired) through the expiry index. */
  sweep(now?: number): Promise<number>;
  stats(now?: number): Promise<MapStats>;
  close(): Promise<void>;
}
