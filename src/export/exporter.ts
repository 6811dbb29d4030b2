// TableExporter: keeps a Postfix table (lmdb:, hash:, btree:, cdb:) in step with the access map, so a
// Postfix with `check_client_access lmdb:/path/name` in smtpd_relay_restrictions relays for clients holding a
// grant without asking relaygate anything at SMTP time.
//
// Three maps describe the state, keyed by the Postfix lookup key (keys.ts):
//   want    — what the table should hold: every unexpired grant this process knows, with its value and expiry;
//   written — what the table holds, as far as postmap confirmed (UNCERTAIN after a failed add: maybe written);
//   dirty   — keys where the two differ.
// A grant (noteGrant, from the observed map) or a delete updates `want` and marks the key dirty; a batch
// then runs one `postmap -d -` for the keys to remove and one `postmap -r -i` for the keys to add or change.
// An idle exporter starts a batch at once (batchDelayMs, default 0: the sources already hand over their
// lines in batches); while postmap runs, changes gather and go out together in the next batch, so under
// load the number of postmap runs stays bounded by their duration, not by the login rate. An expiry heap removes keys from `want` the moment their
// grant expires, so the table follows expiry within milliseconds rather than at the next sweep; each sweep
// also reconciles `want` with map.list(), which catches changes made by other processes (`relaygate map
// del`, a second writer of a shared store).
//
// Start-up: the table is rebuilt from map.list() into a temporary file in the same directory and renamed
// over the old one (Postfix processes notice the new inode and reopen it), so grants that expired while
// relaygate was stopped disappear. cdb cannot be updated in place: each cdb batch is such a rebuild.
//
// Failures: a failed postmap run is logged (event export_failed) and retried with back-off (250 ms doubling
// to 30 s); nothing is dropped from `want`/`dirty`, so no add is lost, and the rebuild at the next start
// repairs any drift. Exactly one postmap runs on the table at a time (one promise chain, `serialize`).
//
// Security: keys are only postfixClientKey() output (a normalized IP; never a user name or `unknown`);
// values are `OK` or digits. A failure can leave the table short of a grant (the client is denied, the safe
// direction) but never adds a key that `want` does not hold; a key whose add may have half-happened is
// tracked as UNCERTAIN so that its later delete is still sent.

import { randomBytes } from 'node:crypto';
import { chmod, chown, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log/logger.ts';
import type { AccessMap, Grant } from '../store/types.ts';
import { RelaygateError } from '../errors.ts';
import { ExpiryHeap } from './expiry-heap.ts';
import { postfixClientKey, tableValue, type ExportValue } from './keys.ts';
import { describeRun, postmapFailed, runProgram, type PostmapRun } from './postmap.ts';
import type { TableSpec } from './table-spec.ts';

export interface TableExporterOptions {
  readonly table: TableSpec;
  readonly value: ExportValue;
  /** the resolved postmap binary */
  readonly postmap: string;
  /** Postfix config_directory for postmap -c (its main.cf); default: postmap's built-in one */
  readonly configDirectory?: string | undefined;
  readonly map: Pick<AccessMap, 'list'>;
  readonly clock: Clock;
  readonly logger: Logger;
  /** how long a change waits for more to join its batch when the exporter is idle (default 0 ms) */
  readonly batchDelayMs?: number;
  /** first retry delay after a failed postmap run; doubles up to retryMaxMs (defaults 250 ms, 30 s) */
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
  /** a postmap run taking longer is killed and counts as failed (default 60 s) */
  readonly timeoutMs?: number;
}

export interface ExportStats {
  /** keys the table should hold */
  wanted: number;
  /** keys waiting for a postmap run */
  pending: number;
  batches: number;
  added: number;
  deleted: number;
  rebuilds: number;
  failures: number;
  /** failures since the last success (0 when healthy) */
  failingFor: number;
  lastBatchMs: number | null;
  /** the most postmap processes that ever ran at once on this table (must stay 1) */
  maxConcurrent: number;
}

interface Wanted {
  readonly value: string;
  readonly expires: number;
  /** change counter when set: reconcile() leaves alone what changed after it read the map */
  readonly seq: number;
}

/** `written` value of a key whose add failed: it may or may not be in the table. */
const UNCERTAIN = '\u0000uncertain';
/** setTimeout's ceiling is 2^31-1 ms; longer waits are re-armed. */
const MAX_TIMER_MS = 2 ** 30;
const TEMP_MARK = '.rgtmp-';

export class TableExporter {
  readonly table: TableSpec;
  private readonly o: TableExporterOptions;
  private readonly want = new Map<string, Wanted>();
  private readonly written = new Map<string, string>();
  private readonly dirty = new Set<string>();
  private readonly heap = new ExpiryHeap();
  /** change counter; `deletedAt` remembers when a key was deleted, until no running reconcile can undo it */
  private seq = 0;
  private readonly deletedAt = new Map<string, number>();
  private chain: Promise<unknown> = Promise.resolve();
  private running = 0;
  private flushTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private expiryAt = Infinity;
  private loop: Promise<void> | undefined;
  private reconciling: Promise<void> | undefined;
  private started = false;
  private stopped = false;
  /** inode of the table file as this process last wrote it: a different one means someone replaced it */
  private fileIno: number | undefined;
  private tempCounter = 0;
  private readonly s: ExportStats = { wanted: 0, pending: 0, batches: 0, added: 0, deleted: 0, rebuilds: 0, failures: 0, failingFor: 0, lastBatchMs: null, maxConcurrent: 0 };

  constructor(opts: TableExporterOptions) {
    this.o = opts;
    this.table = opts.table;
  }

  stats(): ExportStats {
    return { ...this.s, wanted: this.want.size, pending: this.dirty.size };
  }

  /** The table's content as this process wants it: key → value (for tests and `status`). */
  wanted(): Map<string, string> {
    return new Map([...this.want].map(([k, w]) => [k, w.value]));
  }

  /**
   * Rebuilds the table from every active grant and renames it into place. Throws RG_ERR_EXPORT_TABLE (with
   * postmap's own message) when the table cannot be built: the daemon must not run with a table it cannot keep.
   */
  async start(): Promise<void> {
    if (this.started) throw new Error('TableExporter.start() called twice');
    this.started = true;
    const started = performance.now();
    await this.removeStaleTemps();
    const now = this.o.clock();
    for (const g of await this.o.map.list(now)) this.setWanted(g, now);
    try {
      await this.serialize(() => this.rebuild());
    } catch (err) {
      throw new RelaygateError('RG_ERR_EXPORT_TABLE', `cannot build the Postfix table ${this.table.text}: ${(err as Error).message}${hint((err as Error).message, this.table)}`, { cause: err });
    }
    const ms = Math.round(performance.now() - started);
    this.o.logger.info(
      { event: 'export_rebuilt', table: this.table.text, file: this.table.file, entries: this.written.size, value: this.o.value, ms },
      `Postfix table ${this.table.text} rebuilt from the access map with ${this.written.size} grant(s) in ${ms} ms`,
    );
    this.armExpiry();
    this.schedule();
  }

  /** A grant was recorded or refreshed (called by the observed map after the store committed it). */
  noteGrant(g: Grant): void {
    if (this.stopped) return;
    const now = this.o.clock();
    if (g.expires <= now) return;
    if (this.setWanted(g, now) === undefined) return;
    this.armExpiry();
    this.schedule();
  }

  /** A grant was deleted (by `relaygate map del` in this process, or a source). */
  noteDelete(ip: string): void {
    if (this.stopped) return;
    const key = postfixClientKey(ip);
    if (key === undefined || !this.want.has(key)) return;
    this.want.delete(key);
    this.deletedAt.set(key, ++this.seq);
    this.markDirty(key);
    this.schedule();
  }

  /** Drops every wanted key whose grant has expired at `now`; returns how many. Runs on its own timer. */
  expireDue(now: number = this.o.clock()): number {
    let n = 0;
    for (let top = this.heap.peek(); top !== undefined && top.at <= now; top = this.heap.peek()) {
      this.heap.pop();
      const w = this.want.get(top.key);
      if (w === undefined || w.expires !== top.at) continue; // refreshed or already gone: a stale heap entry
      this.want.delete(top.key);
      this.markDirty(top.key);
      n++;
    }
    if (n > 0) {
      this.o.logger.debug({ event: 'export_expired', table: this.table.text, expired: n }, `${n} grant(s) expired: removing them from ${this.table.text}`);
      this.schedule();
    }
    // Refreshes leave stale entries behind; rebuild the heap before they dominate it.
    if (this.heap.size > 4 * this.want.size + 1024) this.heap.reset([...this.want].map(([key, w]) => ({ at: w.expires, key })));
    return n;
  }

  /**
   * Makes `want` equal to the map's active grants, except for keys that changed while the map was read.
   * Catches what this process did not see: `relaygate map del`/`add` from the CLI, other writers.
   */
  reconcile(): Promise<void> {
    if (this.stopped || !this.started) return Promise.resolve();
    this.reconciling ??= this.reconcileOnce().finally(() => {
      this.reconciling = undefined;
    });
    return this.reconciling;
  }

  /** Runs batches now until nothing is pending or one fails; resolves either way (for tests and stop). */
  async flush(): Promise<void> {
    if (this.flushTimer !== undefined) {
      clearTimeout(this.flushTimer);
      this.flushTimer = undefined;
    }
    await this.loop;
    if (this.dirty.size > 0 && this.retryTimer === undefined) await this.runLoop();
  }

  /** Stops timers, waits for the batch in progress, tries once more to write what is pending. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of [this.flushTimer, this.retryTimer, this.expiryTimer]) if (t !== undefined) clearTimeout(t);
    this.flushTimer = this.retryTimer = this.expiryTimer = undefined;
    await this.reconciling?.catch(() => undefined);
    await this.loop;
    if (this.started && this.dirty.size > 0) await this.batch().catch(() => false);
    const pending = this.dirty.size;
    this.o.logger.info(
      { event: 'export_stopped', table: this.table.text, entries: this.written.size, pending },
      pending === 0
        ? `Postfix table ${this.table.text} left with ${this.written.size} grant(s)`
        : `Postfix table ${this.table.text} left with ${pending} change(s) unwritten; the rebuild at the next start repairs them`,
    );
  }

  // ---- internals -------------------------------------------------------------------------------------------

  /** Records `g` in `want` (sliding: a later expiry wins); returns its key, or undefined when refused. */
  private setWanted(g: Grant, now: number): string | undefined {
    const key = postfixClientKey(g.ip);
    if (key === undefined) {
      // The store only holds normalized IPs; anything else is a bug somewhere, and must not reach postmap.
      this.o.logger.warn({ event: 'export_bad_key', table: this.table.text, client_ip: g.ip }, `not exporting a grant whose address ${JSON.stringify(g.ip)} is not a canonical IP`);
      return undefined;
    }
    if (g.expires <= now) return undefined;
    const cur = this.want.get(key);
    const expires = cur === undefined ? g.expires : Math.max(cur.expires, g.expires);
    if (cur === undefined || cur.expires !== expires) {
      this.want.set(key, { value: tableValue(this.o.value, expires), expires, seq: ++this.seq });
      this.heap.push(expires, key);
    }
    this.markDirty(key);
    return key;
  }

  private markDirty(key: string): void {
    const w = this.want.get(key);
    const has = this.written.get(key);
    if (w === undefined ? has === undefined : has === w.value) this.dirty.delete(key);
    else this.dirty.add(key);
  }

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn, fn);
    this.chain = p.catch(() => undefined);
    return p;
  }

  private schedule(): void {
    if (this.stopped || !this.started || this.dirty.size === 0) return;
    if (this.loop !== undefined || this.flushTimer !== undefined || this.retryTimer !== undefined) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      void this.runLoop();
    }, this.o.batchDelayMs ?? 0);
    this.flushTimer.unref();
  }

  /** Batches until clean; after a failure, arms the back-off timer. Only one loop runs at a time. */
  private runLoop(): Promise<void> {
    if (this.loop !== undefined) return this.loop;
    const p = (async () => {
      await Promise.resolve(); // `this.loop` is assigned before the first batch starts
      for (let i = 0; i < 1000 && this.dirty.size > 0 && !this.stopped; i++) {
        if (!(await this.batch())) {
          this.armRetry();
          return;
        }
      }
    })().finally(() => {
      this.loop = undefined;
      this.schedule();
    });
    this.loop = p;
    return p;
  }

  private armRetry(): void {
    if (this.stopped || this.retryTimer !== undefined) return;
    const min = this.o.retryMinMs ?? 250;
    const delay = Math.min(min * 2 ** Math.min(this.s.failingFor - 1, 20), this.o.retryMaxMs ?? 30_000);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.runLoop();
    }, delay);
    this.retryTimer.unref();
  }

  private armExpiry(): void {
    if (this.stopped) return;
    const top = this.heap.peek();
    if (top === undefined) return;
    if (this.expiryTimer !== undefined && this.expiryAt <= top.at) return;
    if (this.expiryTimer !== undefined) clearTimeout(this.expiryTimer);
    this.expiryAt = top.at;
    const delay = Math.min(Math.max(top.at - this.o.clock(), 0), MAX_TIMER_MS);
    this.expiryTimer = setTimeout(() => {
      this.expiryTimer = undefined;
      this.expiryAt = Infinity;
      this.expireDue();
      this.armExpiry();
    }, delay);
    this.expiryTimer.unref();
  }

  /** One batch: the dirty keys go to postmap (or into a rebuild). True on success. */
  private batch(): Promise<boolean> {
    return this.serialize(async () => {
      const started = performance.now();
      const keys = [...this.dirty];
      try {
        let adds = 0;
        let dels = 0;
        if (!this.table.type.incremental || !(await this.fileIsOurs())) {
          await this.rebuild();
          adds = keys.filter((k) => this.want.has(k)).length;
          dels = keys.length - adds;
        } else {
          const del = keys.filter((k) => !this.want.has(k) && this.written.has(k));
          const add = keys.filter((k) => this.want.has(k)).map((k) => [k, this.want.get(k)!.value] as const);
          if (del.length > 0) {
            await this.postmap(['-d', '-', this.table.text], del.map((k) => `${k}\n`).join(''), true);
            for (const k of del) this.written.delete(k);
            dels = del.length;
          }
          if (add.length > 0) {
            try {
              await this.postmap(['-r', '-i', this.table.text], add.map(([k, v]) => `${k} ${v}\n`).join(''), false);
            } catch (err) {
              for (const [k] of add) this.written.set(k, UNCERTAIN);
              throw err;
            }
            for (const [k, v] of add) this.written.set(k, v);
            adds = add.length;
          }
        }
        for (const k of keys) this.markDirty(k);
        const ms = Math.round(performance.now() - started);
        this.s.batches++;
        this.s.added += adds;
        this.s.deleted += dels;
        this.s.lastBatchMs = ms;
        if (this.s.failingFor > 0) {
          this.o.logger.info({ event: 'export_recovered', table: this.table.text, after_failures: this.s.failingFor }, `Postfix table ${this.table.text} is written again after ${this.s.failingFor} failed attempt(s)`);
        }
        this.s.failingFor = 0;
        this.o.logger.debug({ event: 'export_batch', table: this.table.text, added: adds, deleted: dels, ms }, `Postfix table ${this.table.text}: ${adds} added, ${dels} removed in ${ms} ms`);
        return true;
      } catch (err) {
        this.s.failures++;
        this.s.failingFor++;
        const min = this.o.retryMinMs ?? 250;
        const retryMs = Math.min(min * 2 ** Math.min(this.s.failingFor - 1, 20), this.o.retryMaxMs ?? 30_000);
        this.o.logger.error(
          { event: 'export_failed', table: this.table.text, pending: this.dirty.size, attempt: this.s.failingFor, retry_ms: this.stopped ? null : retryMs, err: (err as Error).message },
          `updating Postfix table ${this.table.text} failed (${this.dirty.size} change(s) kept${this.stopped ? '' : `, retrying in ${retryMs} ms`}): ${(err as Error).message}`,
        );
        return false;
      }
    });
  }

  /** One postmap run on the table; throws with postmap's message when it failed. */
  private async postmap(args: readonly string[], input: string, deleting: boolean): Promise<PostmapRun> {
    const argv = [...(this.o.configDirectory === undefined ? [] : ['-c', this.o.configDirectory]), ...args];
    this.running++;
    this.s.maxConcurrent = Math.max(this.s.maxConcurrent, this.running);
    let r: PostmapRun;
    try {
      r = await runProgram(this.o.postmap, argv, input, this.o.timeoutMs ?? 60_000);
    } catch (err) {
      throw new Error(`cannot run ${this.o.postmap}: ${(err as Error).message}`, { cause: err });
    } finally {
      this.running--;
    }
    if (postmapFailed(r, deleting)) throw new Error(`${this.o.postmap} ${argv.join(' ')}: ${describeRun(r)}`);
    if (r.stderr.trim() !== '') this.o.logger.warn({ event: 'export_postmap_warning', table: this.table.text, stderr: r.stderr.trim().slice(0, 2000) }, `postmap: ${r.stderr.trim().split('\n')[0]}`);
    return r;
  }

  /** False when the table file is gone or was replaced behind our back: then only a rebuild is right. */
  private async fileIsOurs(): Promise<boolean> {
    try {
      const st = await stat(this.table.file);
      if (st.ino === this.fileIno) return true;
    } catch {
      /* missing */
    }
    this.o.logger.warn({ event: 'export_table_replaced', table: this.table.text, file: this.table.file }, `${this.table.file} is missing or was replaced by someone else: rebuilding it from the access map`);
    return false;
  }

  /**
   * Writes every wanted key into a fresh table under a temporary name in the same directory (same file
   * system, so the rename is atomic) and renames it over NAME+suffix. The new file keeps the old one's mode
   * and owner, so the Postfix user can still read it; a first table gets 0644.
   */
  private async rebuild(): Promise<void> {
    const { table } = this;
    const snapshot = [...this.want].map(([k, w]) => [k, w.value] as const);
    const tmpName = join(table.dir, `.${table.base}${TEMP_MARK}${process.pid}-${++this.tempCounter}-${randomBytes(4).toString('hex')}`);
    const tmpFile = tmpName + table.type.suffix;
    let mode = 0o644;
    let owner: { uid: number; gid: number } | undefined;
    try {
      const old = await stat(table.file);
      mode = old.mode & 0o7777;
      owner = { uid: old.uid, gid: old.gid };
    } catch {
      /* first build */
    }
    try {
      // postmap's output file takes the source file's mode: written 0644 (keys are addresses, not secrets).
      // O_EXCL: never write through a file or symlink someone else put there.
      await unlink(tmpFile).catch(() => undefined);
      await writeFile(tmpName, snapshot.map(([k, v]) => `${k} ${v}\n`).join(''), { mode: 0o644, flag: 'wx' });
      await this.postmap([`${table.type.type}:${tmpName}`], '', false);
      await chmod(tmpFile, mode);
      if (owner !== undefined && process.getuid?.() === 0) await chown(tmpFile, owner.uid, owner.gid);
      await rename(tmpFile, table.file);
    } catch (err) {
      await unlink(tmpFile).catch(() => undefined);
      throw err;
    } finally {
      await unlink(tmpName).catch(() => undefined);
    }
    this.fileIno = (await stat(table.file)).ino;
    this.written.clear();
    for (const [k, v] of snapshot) this.written.set(k, v);
    for (const k of new Set([...this.dirty, ...this.want.keys(), ...this.written.keys()])) this.markDirty(k);
    this.s.rebuilds++;
  }

  /**
   * Checks the table's directory and removes temporary files a crashed run left beside the table. A directory
   * others may write to is refused: relaygate (often root) creates and renames files there, and another user
   * could plant a symlink or swap the table Postfix trusts for relaying.
   */
  private async removeStaleTemps(): Promise<void> {
    const prefix = `.${this.table.base}${TEMP_MARK}`;
    let names: string[];
    try {
      const st = await stat(this.table.dir);
      if ((st.mode & 0o002) !== 0) {
        throw new Error(`${this.table.dir} is writable by every user (mode ${(st.mode & 0o7777).toString(8)}): anyone could replace the table that grants relaying; use a directory only relaygate can write (e.g. /var/lib/relaygate, mode 0755)`);
      }
      names = await readdir(this.table.dir);
    } catch (err) {
      throw new RelaygateError('RG_ERR_EXPORT_TABLE', `cannot use the directory of the Postfix table ${this.table.text}: ${(err as Error).message}${(err as NodeJS.ErrnoException).code === undefined ? '' : '; create it and make it writable by the relaygate user'}`, { cause: err });
    }
    for (const n of names) if (n.startsWith(prefix)) await unlink(join(this.table.dir, n)).catch(() => undefined);
  }

  private async reconcileOnce(): Promise<void> {
    const startSeq = this.seq;
    const now = this.o.clock();
    const grants = await this.o.map.list(now);
    if (this.stopped) return;
    const active = new Map<string, Grant>();
    for (const g of grants) {
      const key = postfixClientKey(g.ip);
      if (key !== undefined) active.set(key, g);
    }
    let added = 0;
    let removed = 0;
    for (const [key, g] of active) {
      const w = this.want.get(key);
      if (w !== undefined && (w.seq > startSeq || w.expires === g.expires)) continue;
      if (w === undefined && (this.deletedAt.get(key) ?? 0) > startSeq) continue; // deleted while the map was read
      if (g.expires <= this.o.clock()) continue;
      if (w === undefined) added++;
      this.want.set(key, { value: tableValue(this.o.value, g.expires), expires: g.expires, seq: ++this.seq });
      this.heap.push(g.expires, key);
      this.markDirty(key);
    }
    for (const [key, w] of [...this.want]) {
      if (active.has(key) || w.seq > startSeq) continue;
      this.want.delete(key);
      this.markDirty(key);
      removed++;
    }
    for (const key of this.written.keys()) if (!this.want.has(key)) this.markDirty(key);
    for (const [key, at] of this.deletedAt) if (at <= startSeq) this.deletedAt.delete(key);
    if (added + removed > 0) {
      this.o.logger.info({ event: 'export_reconciled', table: this.table.text, added, removed }, `Postfix table ${this.table.text}: the access map changed outside this process (${added} grant(s) to add, ${removed} to remove)`);
    }
    this.armExpiry();
    this.schedule();
  }
}

/** The fix for postmap failures an operator meets at start-up. */
function hint(message: string, table: TableSpec): string {
  if (/main\.cf/.test(message)) return '; postmap needs Postfix\'s main.cf: set [export] config_directory to the directory that holds it';
  if (/unsupported dictionary type/i.test(message)) return `; this Postfix has no ${table.type.type}: tables (postconf -m lists the types it has; Debian package ${table.type.debianPackage})`;
  if (/EACCES|permission denied/i.test(message)) return `; make ${table.dir} writable by the user relaygate runs as`;
  return '';
}
