// The push outbox: logins a POP/IMAP host has seen and not yet delivered to every `push_to` URL, on disk
// (an LMDB environment of its own, `<data_dir>/outbox`), so a central server that is down, unreachable or
// restarting loses nothing: the logins wait here and are delivered later, unless they are older than
// `grace` by then (a late grant would be wrong: the client's window has passed).
//
// Layout: named databases
//   meta    `format` → {format: 'relaygate-push-outbox', version: 1}
//   queue   sequence number (1, 2, ...; ordered-binary, so key order = arrival order) → {ip, user, service, at}
//   state   `cursor:<url>` → the highest sequence number that URL has acknowledged; and the sources'
//           positions (`tail:<file>`, journald cursors), written in the SAME transaction as the logins their
//           lines produced: a source's position never runs ahead of what is safely queued.
// An entry is deleted once every current URL's cursor has passed it. append() waits for the commit to be
// flushed to disk (fsync) before it resolves, so a tailer that saves its position through it can never
// skip a login after a crash.
// Bounded: at most `limit` entries. Appending beyond it drops the oldest entries in the same transaction
// (they are the nearest to expiry and the least useful) and logs how many: the tailer is never blocked
// and never refused, and memory and disk stay bounded while a central server is away for long.
//
// Security: holds login data only (no secrets). The directory is relaygate's own; its LMDB file is checked
// for damage before lmdb-js maps it (checkDataFile), because lmdb-js crashes the process on a garbage file.

import { open as openLmdb, type Database, type RootDatabase } from 'lmdb';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { checkDataFile } from '../store/lmdb-map.ts';
import { RelaygateError } from '../errors.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log/logger.ts';

export const OUTBOX_FORMAT = 'relaygate-push-outbox';
export const OUTBOX_FORMAT_VERSION = 1;

/** One queued login, as it goes over the wire (plus its sequence number). */
export interface OutboxEntry {
  readonly seq: number;
  readonly ip: string;
  readonly user?: string | undefined;
  readonly service?: string | undefined;
  /** login time, ms since the epoch */
  readonly at: number;
}

export type QueuedLogin = Omit<OutboxEntry, 'seq'>;

export interface OutboxOptions {
  /** directory of the LMDB environment (created 0700 when missing) */
  readonly path: string;
  /** most entries held */
  readonly limit: number;
  /** the URLs that must each receive every entry (push_to) */
  readonly consumers: readonly string[];
  readonly clock: Clock;
  readonly logger: Logger;
}

interface Stored {
  readonly ip: string;
  readonly user?: string;
  readonly service?: string;
  readonly at: number;
}

const cursorKey = (url: string) => `cursor:${url}`;

export class Outbox {
  private readonly listeners = new Set<() => void>();
  private count: number;
  private nextSeq: number;
  private closed = false;
  /** appends and acks are serialized, so the in-memory count and sequence stay exact */
  private chain: Promise<unknown> = Promise.resolve();
  readonly counters = { appended: 0, droppedFull: 0, deleted: 0 };

  private constructor(
    readonly path: string,
    private readonly root: RootDatabase,
    private readonly queue: Database<Stored, number>,
    private readonly state: Database<unknown, string>,
    private readonly opts: OutboxOptions,
  ) {
    this.count = (queue.getStats() as { entryCount: number }).entryCount;
    // Sequence numbers never go back, even when the queue is empty: cursors point past delivered ones.
    const [last] = Array.from(queue.getKeys({ reverse: true, limit: 1 }));
    let high = typeof last === 'number' ? last : 0;
    for (const { value } of state.getRange({ start: 'cursor:', end: 'cursor;' })) if (typeof value === 'number' && value > high) high = value;
    this.nextSeq = high + 1;
  }

  static async open(opts: OutboxOptions): Promise<Outbox> {
    const path = resolve(opts.path);
    const fail = (problem: string, cause?: unknown) =>
      new RelaygateError('RG_ERR_STORE_OPEN', `cannot open the push outbox ${path}: ${problem}; move the directory aside and restart (logins not yet delivered are then lost, later ones are queued anew)`, cause === undefined ? undefined : { cause });
    try {
      await mkdir(path, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new RelaygateError('RG_ERR_STORE_OPEN', `cannot create the push outbox directory ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); make data_dir writable by the relaygate user`, { cause: err });
    }
    const damage = await checkDataFile(join(path, 'data.mdb')).catch((err: unknown) => `cannot read data.mdb (${(err as Error).message})`);
    if (damage !== undefined) throw fail(damage);
    let root: RootDatabase;
    try {
      root = openLmdb({ path, noSubdir: false, maxDbs: 4 });
    } catch (err) {
      throw fail(`LMDB refused it (${(err as Error).message})`, err);
    }
    try {
      const meta = root.openDB<{ format: string; version: number }, string>({ name: 'meta', encoding: 'json' });
      const marker = meta.get('format');
      if (marker === undefined) {
        await root.transaction(() => meta.putSync('format', { format: OUTBOX_FORMAT, version: OUTBOX_FORMAT_VERSION }));
      } else if (marker.format !== OUTBOX_FORMAT || marker.version !== OUTBOX_FORMAT_VERSION) {
        throw fail(`it is not a version ${OUTBOX_FORMAT_VERSION} relaygate push outbox (${JSON.stringify(marker).slice(0, 100)})`);
      }
      const queue = root.openDB<Stored, number>({ name: 'queue', encoding: 'json' });
      const state = root.openDB<unknown, string>({ name: 'state', encoding: 'json' });
      const box = new Outbox(path, root, queue, state, opts);
      await box.forgetOldConsumers();
      return box;
    } catch (err) {
      await root.close().catch(() => undefined);
      if (err instanceof RelaygateError) throw err;
      throw fail(`LMDB could not read it (${(err as Error).message})`, err);
    }
  }

  /** Entries queued now. */
  get size(): number {
    return this.count;
  }

  /** Calls `fn` after every append that added entries (senders wake up). Returns an unsubscribe. */
  onAppend(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private ioError(op: string, err: unknown): RelaygateError {
    if (err instanceof RelaygateError) return err;
    return new RelaygateError('RG_ERR_STORE_IO', `push outbox ${this.path}: ${op} failed: ${(err as Error).message}`, { cause: err });
  }

  private assertOpen(op: string): void {
    if (this.closed) throw new RelaygateError('RG_ERR_STORE_IO', `push outbox ${this.path}: ${op} after close`);
  }

  /**
   * Queues `logins` and writes `state` (a source's position) in one transaction, flushed to disk before
   * this resolves. Drops the oldest entries when the outbox would exceed its limit; returns how many.
   */
  append(logins: readonly QueuedLogin[], state?: Readonly<Record<string, unknown>>): Promise<{ dropped: number }> {
    this.assertOpen('append');
    return this.serial(async () => {
      const stateEntries = state === undefined ? [] : Object.entries(state);
      if (logins.length === 0 && stateEntries.length === 0) return { dropped: 0 };
      const first = this.nextSeq;
      let dropped = 0;
      try {
        dropped = await this.root.transaction(() => {
          let seq = first;
          for (const l of logins) {
            const v: Stored = { ip: l.ip, at: l.at, ...(l.user === undefined ? {} : { user: l.user }), ...(l.service === undefined ? {} : { service: l.service }) };
            this.queue.putSync(seq++, v);
          }
          for (const [k, v] of stateEntries) this.state.putSync(k, v);
          const excess = this.count + logins.length - this.opts.limit;
          let gone = 0;
          if (excess > 0) {
            for (const k of Array.from(this.queue.getKeys({ limit: excess }))) {
              this.queue.removeSync(k);
              gone++;
            }
          }
          return gone;
        });
        // The position must not be acknowledged before the logins are durable.
        await this.root.flushed;
      } catch (err) {
        throw this.ioError(`queueing ${logins.length} login(s)`, err);
      }
      this.nextSeq = first + logins.length;
      this.count += logins.length - dropped;
      this.counters.appended += logins.length;
      if (dropped > 0) {
        this.counters.droppedFull += dropped;
        this.opts.logger.warn(
          { event: 'push_outbox_full', dropped, limit: this.opts.limit },
          `push outbox full (${this.opts.limit} logins): dropped the ${dropped} oldest undelivered login(s); the central relaygate has been unreachable for long (see push_failed lines) or raise push_outbox_limit`,
        );
      }
      if (logins.length > 0) for (const fn of this.listeners) fn();
      return { dropped };
    });
  }

  /** Up to `limit` entries after sequence number `after`, oldest first. */
  read(after: number, limit: number): OutboxEntry[] {
    this.assertOpen('read');
    const out: OutboxEntry[] = [];
    try {
      for (const { key, value } of this.queue.getRange({ start: after + 1, limit })) {
        out.push({ seq: key, ip: value.ip, user: value.user, service: value.service, at: value.at });
      }
    } catch (err) {
      throw this.ioError('read', err);
    }
    return out;
  }

  /** The highest sequence number `url` has acknowledged (0: none). */
  cursor(url: string): number {
    const v = this.state.get(cursorKey(url));
    return typeof v === 'number' ? v : 0;
  }

  /**
   * Records that `url` has dealt with everything up to `seq` (delivered, or dropped as stale), and deletes
   * the entries every consumer has passed. Not flushed explicitly: losing an ack in a crash only means a
   * batch is sent again, which the receiver merges (delivery is at least once).
   */
  ack(url: string, seq: number): Promise<void> {
    this.assertOpen('ack');
    return this.serial(async () => {
      const cursors = this.opts.consumers.map((u) => (u === url ? seq : this.cursor(u)));
      const upTo = Math.min(...cursors);
      let deleted = 0;
      try {
        deleted = await this.root.transaction(() => {
          this.state.putSync(cursorKey(url), seq);
          let n = 0;
          for (const k of Array.from(this.queue.getKeys({ end: upTo + 1 }))) {
            this.queue.removeSync(k);
            n++;
          }
          return n;
        });
      } catch (err) {
        throw this.ioError('ack', err);
      }
      this.count = Math.max(0, this.count - deleted);
      this.counters.deleted += deleted;
    });
  }

  async getState(key: string): Promise<unknown> {
    this.assertOpen('getState');
    try {
      return this.state.get(key);
    } catch (err) {
      throw this.ioError(`reading state ${key}`, err);
    }
  }

  async setState(key: string, value: unknown): Promise<void> {
    await this.append([], { [key]: value });
  }

  /** Cursors of URLs no longer in push_to are removed, so they do not hold entries back for ever. */
  private async forgetOldConsumers(): Promise<void> {
    const keep = new Set(this.opts.consumers.map(cursorKey));
    const stale = Array.from(this.state.getKeys({ start: 'cursor:', end: 'cursor;' }), String).filter((k) => !keep.has(k));
    if (stale.length === 0) return;
    await this.root.transaction(() => {
      for (const k of stale) this.state.removeSync(k);
    });
    this.opts.logger.info({ event: 'push_outbox_consumers_removed', urls: stale.map((k) => k.slice('cursor:'.length)) }, `push outbox: forgot the delivery positions of ${stale.length} URL(s) no longer in push_to`);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.chain;
    await this.root.close();
  }
}
