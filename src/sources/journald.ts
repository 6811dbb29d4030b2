// A [[watch]] with `journald = true`: follows the systemd journal through `journalctl -f -o json` (no
// libsystemd binding: journalctl is the stable, documented interface), narrowed by `unit` (-u),
// `identifier` (-t) and read from `journal_directory` (-D) when configured.
//
// Each JSON line is one journal entry: MESSAGE (a string; an array of byte values when it is not printable
// UTF-8, decoded here with U+FFFD replacements; null when larger than journalctl's 4 KiB field limit),
// SYSLOG_IDENTIFIER (else _COMM), _PID (else SYSLOG_PID), __REALTIME_TIMESTAMP (µs since the epoch, the
// time journald received the entry: the grant counts from it) and __CURSOR. The message goes to
// LineParser.parseFields exactly as a prefixed line's message would.
//
// Exactly once: entries are recorded in batches (whatever arrived while the previous batch was written,
// at most BATCH), and the cursor of a batch's last entry is saved under `journald:<filters>` in the same
// transaction as the batch's grants. journalctl is (re)started with `--after-cursor=<saved>`, so a restart
// of relaygate or of journalctl neither repeats nor loses an entry. A failed store write does not advance
// the cursor: the same batch is retried with back-off (and journalctl's output is paused meanwhile).
//
// Start without a saved cursor: `--since=@<now - grace>`. A login in the last `grace` seconds still
// authorizes its IP, so it must count even though it was logged just before relaygate started; anything
// older would be refused as stale by its own timestamp anyway, so reading further back (possibly
// gigabytes of journal) would be work for nothing, and `-n 0` would lose the recent logins.
//
// journalctl exiting (it never should while following) or missing: logged at error with its exit status
// and the tail of its stderr, then restarted after a back-off of 1 s doubling to 30 s (reset once it has
// run for a minute), resuming from the saved cursor. A saved cursor journalctl rejects is dropped (the
// next start uses --since) so a damaged state cannot make it fail forever. While it runs, journalctl's
// stderr lines are logged at warn (rate-limited): the one that matters is its hint that the user running
// relaygate sees only its own entries (add that user to the `systemd-journal` group).
//
// Notes on journalctl: `-f` implies `-n 10` (we pass --no-tail so --since/--after-cursor decide) and,
// unless `--merge`, only the latest boot; with `journal_directory` we pass `-m`, because a directory
// written by systemd-journal-remote holds several machines' boots and "the latest boot" would be just one
// of them. The system journal is read without `-m` (local machine only, never remote hosts' journals),
// so after a reboot the few entries between the saved cursor and the shutdown are not read. With
// `identifier` (and no `ident`), the parser gets no ident: -t already selected it, and the format's
// default idents would otherwise reject an instance_name other than `dovecot`.
//
// Security: MESSAGE is untrusted like any log line (the parser anchors its patterns and takes the IP from
// the server's own last field); it is decoded, bounded (MAX_LINE) and never logged raw. SYSLOG_IDENTIFIER
// is chosen by the sending process — any local user can `logger -t dovecot` — so `identifier` (-t) is a
// filter, not an authentication; `unit` (-u) matches _SYSTEMD_UNIT, which journald itself sets from the
// sender's cgroup (plus entries about the unit from PID 1 and root), and is the better choice on a
// multi-user host. An entry whose identifier field is
// present but not one plain string is skipped rather than let through the parser's ident filter. The
// cursor is opaque: it is only stored and handed back to journalctl as one argv element (no shell), and
// is bounded in length and free of control characters before use. Malformed lines are skipped and
// logged (at most MALFORMED_LOGS_PER_MIN a minute); they never stop the source.

import { spawn, type ChildProcess } from 'node:child_process';
import { resolve as resolvePath } from 'node:path';
import type { AccessMap } from '../store/index.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log/logger.ts';
import type { WatchConfig } from '../config/index.ts';
import type { LineParser, ParseResult } from './parser.ts';
import { LoginRecorder } from './recorder.ts';

/** entries per store transaction, at most */
export const BATCH = 500;
/** a JSON line longer than this (characters) is skipped as malformed */
export const MAX_LINE = 1 << 20;
export const MAX_CURSOR = 1024;
export const MALFORMED_LOGS_PER_MIN = 10;
/** queued entries above which journalctl's output is paused until the store catches up */
const HIGH_WATER = 10_000;
const LOW_WATER = 1_000;
const STDERR_TAIL = 2048;
/** a journalctl that ran this long resets the restart back-off */
const HEALTHY_MS = 60_000;
/** how long stop() waits for journalctl after SIGTERM before SIGKILL */
const KILL_WAIT_MS = 5_000;

export interface JournaldWatchOptions {
  readonly watch: WatchConfig;
  readonly parser: LineParser;
  readonly map: AccessMap;
  readonly clock: Clock;
  readonly logger: Logger;
  /** seconds */
  readonly grace: number;
  /** the journalctl binary (default `journalctl`, found on PATH) */
  readonly journalctl?: string;
  /** restart / retry back-off bounds in ms (default 1 s … 30 s); tests shorten them */
  readonly backoffMs?: { readonly min: number; readonly max: number };
}

/** One journal entry, reduced to what the parser needs. */
export interface JournalEntry {
  /** ms since the epoch */
  readonly time: number;
  readonly ident: string | undefined;
  readonly pid: number | undefined;
  readonly message: string;
}

export type DecodedLine =
  /** an entry to parse (cursor when journalctl gave one) */
  | { readonly kind: 'entry'; readonly entry: JournalEntry; readonly cursor: string | undefined }
  /** a well-formed entry with nothing to parse (no usable MESSAGE or identifier): only its cursor counts */
  | { readonly kind: 'skip'; readonly why: string; readonly cursor: string | undefined }
  | { readonly kind: 'malformed'; readonly why: string };

/** The state key of a watch: one cursor per distinct journal selection. */
export function journalStateKey(w: Pick<WatchConfig, 'unit' | 'identifier' | 'journal_directory'>): string {
  const parts: string[] = [];
  if (w.unit !== undefined) parts.push(`unit=${w.unit}`);
  if (w.identifier !== undefined) parts.push(`identifier=${w.identifier}`);
  if (w.journal_directory !== undefined) parts.push(`directory=${resolvePath(w.journal_directory)}`);
  return `journald:${parts.length === 0 ? 'all' : parts.join(';')}`;
}

/** journalctl's arguments: resume after `cursor` when there is one, else read from `sinceSec` (epoch s). */
export function journalctlArgs(w: Pick<WatchConfig, 'unit' | 'identifier' | 'journal_directory'>, from: { cursor: string } | { sinceSec: number }): string[] {
  const args = ['-f', '-o', 'json', '--no-pager', '--no-tail'];
  if (w.journal_directory !== undefined) args.push('-D', resolvePath(w.journal_directory), '-m');
  if (w.unit !== undefined) args.push('-u', w.unit);
  if (w.identifier !== undefined) args.push('-t', w.identifier);
  if ('cursor' in from) args.push(`--after-cursor=${from.cursor}`);
  else args.push(`--since=@${Math.max(0, Math.floor(from.sinceSec))}`);
  return args;
}

export function isUsableCursor(v: unknown): v is string {
  // eslint-disable-next-line no-control-regex
  return typeof v === 'string' && v.length > 0 && v.length <= MAX_CURSOR && !/[\x00-\x1f\x7f]/.test(v);
}

/**
 * A field of journalctl's JSON: a string; an array of byte values (not printable UTF-8); an array of
 * those when the entry holds the field more than once; null when it was too large to print.
 * Returns the single value as a string, 'absent', or 'unusable' (null, repeated, or junk).
 */
export function fieldValue(v: unknown): string | 'absent' | 'unusable' {
  if (v === undefined) return 'absent';
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && v.length <= MAX_LINE && v.every((b) => Number.isInteger(b) && (b as number) >= 0 && (b as number) <= 255)) {
    return Buffer.from(v as number[]).toString('utf8');
  }
  return 'unusable';
}

/** One line of `journalctl -o json` → what it is. Never throws. */
export function decodeJournalLine(line: string): DecodedLine {
  if (line.length > MAX_LINE) return { kind: 'malformed', why: `line longer than ${MAX_LINE} characters` };
  let obj: unknown;
  try {
    obj = JSON.parse(line);
  } catch {
    return { kind: 'malformed', why: 'not JSON' };
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return { kind: 'malformed', why: 'not a JSON object' };
  const o = obj as Record<string, unknown>;
  const rawCursor = o.__CURSOR;
  const cursor = isUsableCursor(rawCursor) ? rawCursor : undefined;
  const ts = o.__REALTIME_TIMESTAMP;
  if (typeof ts !== 'string' || !/^\d{1,19}$/.test(ts)) return { kind: 'malformed', why: 'no valid __REALTIME_TIMESTAMP' };
  const time = Number(BigInt(ts) / 1000n);
  if (!Number.isSafeInteger(time)) return { kind: 'malformed', why: '__REALTIME_TIMESTAMP out of range' };

  const message = fieldValue(o.MESSAGE);
  if (message === 'absent' || message === 'unusable') return { kind: 'skip', why: `MESSAGE ${message}`, cursor };

  let ident: string | undefined;
  const sid = fieldValue(o.SYSLOG_IDENTIFIER);
  if (sid === 'unusable') return { kind: 'skip', why: 'SYSLOG_IDENTIFIER unusable', cursor };
  if (sid !== 'absent') ident = sid;
  else {
    const comm = fieldValue(o._COMM);
    if (comm === 'unusable') return { kind: 'skip', why: '_COMM unusable', cursor };
    // No program name at all: '' so a configured ident filter rejects the entry instead of waving it through.
    ident = comm === 'absent' ? '' : comm;
  }

  let pid: number | undefined;
  for (const f of [o._PID, o.SYSLOG_PID]) {
    const p = fieldValue(f);
    if (p !== 'absent' && p !== 'unusable' && /^\d{1,10}$/.test(p)) {
      pid = Number(p);
      break;
    }
  }
  return { kind: 'entry', entry: { time, ident, pid, message }, cursor };
}

interface Queued {
  readonly entry: JournalEntry | undefined;
  readonly cursor: string | undefined;
}

interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly error: Error | undefined;
  readonly stderr: string;
  readonly sawOutput: boolean;
}

export interface JournaldCounters {
  entries: number;
  skipped: number;
  malformed: number;
  batches: number;
  storeFailures: number;
  restarts: number;
}

export class JournaldWatch {
  readonly stateKey: string;
  readonly counters: JournaldCounters = { entries: 0, skipped: 0, malformed: 0, batches: 0, storeFailures: 0, restarts: 0 };
  private readonly recorder: LoginRecorder;
  private readonly bin: string;
  private readonly backoff: { readonly min: number; readonly max: number };
  /** the cursor saved with the last committed batch */
  private cursor: string | undefined;
  private child: ChildProcess | undefined;
  private loop: Promise<void> | undefined;
  private queue: Queued[] = [];
  private working: Promise<void> | undefined;
  private paused = false;
  private stopped = false;
  private wake: (() => void) | undefined;
  private readonly malformedLimit = new RateLimit(MALFORMED_LOGS_PER_MIN);
  private readonly stderrLimit = new RateLimit(MALFORMED_LOGS_PER_MIN);
  /** the parser's ident: journalctl -t already selected the identifier, so the format's defaults must not reject it */
  private readonly passIdent: boolean;

  constructor(private readonly opts: JournaldWatchOptions) {
    const w = opts.watch;
    this.stateKey = journalStateKey(w);
    this.bin = opts.journalctl ?? 'journalctl';
    this.backoff = opts.backoffMs ?? { min: 1000, max: 30_000 };
    this.passIdent = !(w.identifier !== undefined && w.ident === undefined);
    this.recorder = new LoginRecorder({
      map: opts.map,
      clock: opts.clock,
      logger: opts.logger,
      source: `${w.format}:journald`,
      trackLogout: w.track_logout,
      grace: opts.grace,
    });
  }

  /** The cursor of the last recorded entry (tests, metrics). */
  get savedCursor(): string | undefined {
    return this.cursor;
  }

  /** journalctl is running now (false between a crash and its restart, or after stop) */
  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  get loginCounters(): LoginRecorder['counters'] {
    return this.recorder.counters;
  }

  /** Loads the saved cursor and starts journalctl. Never fails because journalctl does: that is retried. */
  async start(): Promise<void> {
    const saved = await this.opts.map.getState(this.stateKey);
    if (saved !== undefined) {
      const c = (saved as { cursor?: unknown } | null)?.cursor;
      if (isUsableCursor(c)) this.cursor = c;
      else this.opts.logger.warn({ event: 'journald_state_invalid', key: this.stateKey }, `saved journald state ${this.stateKey} is not a usable cursor; starting from the last ${this.opts.grace} s`);
    }
    this.opts.logger.info(
      { event: 'watch_start', journald: true, key: this.stateKey, format: this.opts.watch.format, resume: this.cursor !== undefined },
      `following the journal (${this.opts.watch.format}, ${this.stateKey})${this.cursor === undefined ? ` from the last ${this.opts.grace} s` : ' from the saved cursor'}`,
    );
    this.loop = this.run();
  }

  /** Stops journalctl (SIGTERM, then SIGKILL) and waits for the entries already read to be recorded. */
  async stop(): Promise<void> {
    if (this.stopped) {
      await this.loop;
      return;
    }
    this.stopped = true;
    this.wake?.();
    const child = this.child;
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      // Output held back for a failing store must flow again, or the pipe never ends and 'close' never comes.
      if (this.paused) {
        this.paused = false;
        child.stdout?.resume();
      }
      child.kill('SIGTERM');
      if (!(await exited(child, KILL_WAIT_MS))) {
        child.kill('SIGKILL');
        await exited(child, KILL_WAIT_MS);
      }
    }
    await this.loop;
    await this.working;
    this.recorder.close();
  }

  private async run(): Promise<void> {
    let attempt = 0;
    while (!this.stopped) {
      const began = performance.now();
      const from = this.cursor !== undefined ? { cursor: this.cursor } : { sinceSec: (this.opts.clock() - this.opts.grace * 1000) / 1000 };
      const exit = await this.runOnce(journalctlArgs(this.opts.watch, from));
      if (this.stopped) break;
      if (performance.now() - began >= HEALTHY_MS) attempt = 0;
      const delay = Math.min(this.backoff.max, this.backoff.min * 2 ** Math.min(attempt, 30));
      attempt++;
      this.counters.restarts++;
      const why = exit.error !== undefined ? `could not be started: ${exit.error.message}` : `exited (${exit.signal ?? `code ${exit.code}`})`;
      this.opts.logger.error(
        { event: 'journald_exit', key: this.stateKey, bin: this.bin, code: exit.code, signal: exit.signal, err: exit.error, stderr: exit.stderr, restart_in_ms: delay },
        `journalctl ${why}${exit.stderr ? `: ${lastLine(exit.stderr)}` : ''}; restarting in ${delay} ms`,
      );
      if ('cursor' in from && !exit.sawOutput && exit.code !== null && exit.code !== 0 && /cursor/i.test(exit.stderr)) {
        // journalctl refused the saved cursor (damaged state): do not fail on it forever.
        this.opts.logger.warn({ event: 'journald_cursor_rejected', key: this.stateKey }, `journalctl rejected the saved cursor; starting from the last ${this.opts.grace} s`);
        this.cursor = undefined;
      }
      await this.sleep(delay);
    }
  }

  /** Runs one journalctl until it exits; resolves once every entry it printed has been recorded. */
  private runOnce(args: string[]): Promise<Exit> {
    return new Promise<Exit>((resolveExit) => {
      let child: ChildProcess;
      try {
        child = spawn(this.bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (err) {
        resolveExit({ code: null, signal: null, error: err as Error, stderr: '', sawOutput: false });
        return;
      }
      this.child = child;
      this.paused = false;
      let stderr = '';
      let stderrPartial = '';
      let partial = '';
      let oversized = false;
      let sawOutput = false;
      let settled = false;
      child.stderr!.setEncoding('utf8');
      child.stderr!.on('data', (d: string) => {
        stderr = (stderr + d).slice(-STDERR_TAIL);
        const lines = (stderrPartial + d).split('\n');
        stderrPartial = lines.pop()!.slice(-STDERR_TAIL);
        for (const l of lines) if (l.trim() !== '') this.stderrLine(l.trim());
      });
      child.stdout!.setEncoding('utf8');
      child.stdout!.on('data', (d: string) => {
        sawOutput = true;
        let start = 0;
        for (let nl = d.indexOf('\n'); nl !== -1; nl = d.indexOf('\n', start)) {
          const piece = d.slice(start, nl);
          start = nl + 1;
          if (oversized) {
            oversized = false;
            partial = '';
            continue;
          }
          const line = partial + piece;
          partial = '';
          if (line.length > 0) this.accept(line);
        }
        if (!oversized) {
          partial += d.slice(start);
          if (partial.length > MAX_LINE) {
            // Bounded: drop the rest of this line when its newline comes.
            this.malformed(`line longer than ${MAX_LINE} characters`);
            partial = '';
            oversized = true;
          }
        }
        this.kick();
      });
      const finish = (e: Omit<Exit, 'stderr' | 'sawOutput'>): void => {
        if (settled) return;
        settled = true;
        if (this.child === child) this.child = undefined;
        // A line cut short by journalctl's death is incomplete, not malformed: it is read again after the cursor.
        void this.drained().then(() => resolveExit({ ...e, stderr: stderr.trim(), sawOutput }));
      };
      child.on('error', (err) => {
        // 'error' with a pid is a failed kill/signal, not an exit: wait for 'close'.
        if (child.pid === undefined) finish({ code: null, signal: null, error: err });
        else this.opts.logger.warn({ event: 'journald_child_error', err }, `journalctl: ${err.message}`);
      });
      child.once('close', (code, signal) => finish({ code, signal, error: undefined }));
    });
  }

  private accept(line: string): void {
    const d = decodeJournalLine(line);
    if (d.kind === 'malformed') {
      this.malformed(d.why, line);
      return;
    }
    if (d.kind === 'skip') {
      this.counters.skipped++;
      this.opts.logger.debug({ event: 'journald_entry_skipped', why: d.why }, `journal entry skipped: ${d.why}`);
      if (d.cursor !== undefined) this.queue.push({ entry: undefined, cursor: d.cursor });
    } else {
      this.counters.entries++;
      this.queue.push({ entry: d.entry, cursor: d.cursor });
    }
    if (this.queue.length >= HIGH_WATER && !this.paused && this.child !== undefined) {
      this.paused = true;
      this.child.stdout?.pause();
    }
  }

  private malformed(why: string, line?: string): void {
    this.counters.malformed++;
    const { ok, suppressed } = this.malformedLimit.take(this.opts.clock());
    if (suppressed > 0) this.opts.logger.warn({ event: 'journald_malformed_suppressed', count: suppressed }, `${suppressed} more malformed journalctl line(s) were skipped`);
    // The sample is JSON-escaped by the logger and cut short: never a raw, unbounded line.
    if (ok) this.opts.logger.warn({ event: 'journald_malformed', why, sample: line?.slice(0, 120) }, `skipped a malformed journalctl line: ${why}`);
  }

  /** journalctl's own complaints while it runs (e.g. the hint that this user cannot read the system's entries). */
  private stderrLine(line: string): void {
    const { ok, suppressed } = this.stderrLimit.take(this.opts.clock());
    if (suppressed > 0) this.opts.logger.warn({ event: 'journald_stderr_suppressed', count: suppressed }, `${suppressed} more journalctl stderr line(s) not shown`);
    if (ok) this.opts.logger.warn({ event: 'journald_stderr', key: this.stateKey, line: line.slice(0, 300) }, `journalctl: ${line.slice(0, 300)}`);
  }

  /** Starts the batch writer unless it is running. */
  private kick(): void {
    if (this.working !== undefined || this.queue.length === 0) return;
    this.working = (async () => {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, BATCH);
        const ok = await this.commit(batch);
        if (!ok) {
          // Stopping while the store fails: nothing after the saved cursor is recorded; it is read again next time.
          this.queue = [];
          break;
        }
        if (this.paused && this.queue.length < LOW_WATER) {
          this.paused = false;
          this.child?.stdout?.resume();
        }
      }
    })().finally(() => {
      this.working = undefined;
      this.kick();
    });
  }

  /** Resolves when every queued entry is recorded (or given up at stop). */
  private async drained(): Promise<void> {
    while (this.working !== undefined) await this.working;
  }

  /** Records one batch with its last cursor; retries with back-off until it is stored. false: given up (stopping). */
  private async commit(batch: readonly Queued[]): Promise<boolean> {
    const now = this.opts.clock();
    const results: ParseResult[] = [];
    let cursor: string | undefined;
    for (const q of batch) {
      if (q.cursor !== undefined) cursor = q.cursor;
      if (q.entry === undefined) continue;
      const e = q.entry;
      results.push(this.opts.parser.parseFields({ time: e.time, ident: this.passIdent ? e.ident : undefined, pid: e.pid, message: e.message }, now));
    }
    const state = cursor === undefined ? undefined : { [this.stateKey]: { cursor } };
    for (let attempt = 0; ; attempt++) {
      try {
        await this.recorder.record(results, state);
        this.counters.batches++;
        if (cursor !== undefined) this.cursor = cursor;
        return true;
      } catch (err) {
        this.counters.storeFailures++;
        const delay = Math.min(this.backoff.max, this.backoff.min * 2 ** Math.min(attempt, 30));
        this.opts.logger.error(
          { event: 'journald_record_failed', key: this.stateKey, attempt, entries: batch.length, err, retry_in_ms: delay },
          `could not record ${batch.length} journal entries; the cursor stays put, retrying in ${delay} ms`,
        );
        if (this.stopped) return false;
        // Hold journalctl's output while the store is down (the batch stays in memory, bounded by HIGH_WATER).
        if (!this.paused && this.child !== undefined) {
          this.paused = true;
          this.child.stdout?.pause();
        }
        await this.sleep(delay);
        if (this.stopped) return false;
      }
    }
  }

  /** A back-off wait that stop() cuts short. */
  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = undefined;
        done();
      };
    });
  }
}

/** At most `perMinute` events a minute; says how many were held back when a new minute begins. */
class RateLimit {
  private start = Number.NEGATIVE_INFINITY;
  private taken = 0;
  private held = 0;

  constructor(private readonly perMinute: number) {}

  take(now: number): { ok: boolean; suppressed: number } {
    let suppressed = 0;
    if (now - this.start >= 60_000 || now < this.start) {
      suppressed = this.held;
      this.start = now;
      this.taken = 0;
      this.held = 0;
    }
    if (this.taken < this.perMinute) {
      this.taken++;
      return { ok: true, suppressed };
    }
    this.held++;
    return { ok: false, suppressed };
  }
}

function exited(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, timeoutMs);
    const onExit = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

function lastLine(s: string): string {
  const lines = s.split('\n').filter((l) => l.trim() !== '');
  return (lines[lines.length - 1] ?? '').slice(0, 300);
}
