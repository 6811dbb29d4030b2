// A [[watch]] with `path`: follows one file, or every file matching a glob in the last path component
// (`/var/log/dovecot/*.log`), each with its own rotation-safe tailer whose position is saved in the access
// map under `tail:<absolute path>` together with the grants its lines produced.
// Catching up on a backlog, up to PIPELINE batches are in flight (with a store that has conditional
// writes): the next chunk is read and parsed while the previous batch commits. Each batch commits only if
// the saved position is the one the batch before it saved, so after a failed batch no later one commits,
// and the position never runs ahead of the grants (bench/ingest.ts measures the gain).
//
// Security: file content is untrusted (see parser.ts); file names come from configuration. Rotated
// siblings (`mail.log.1`, `mail.log-20261121`) are never followed as files of their own, so one login is
// not read twice; the tailer drains them itself when it needs to.

import { readdir } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { basename, dirname, resolve } from 'node:path';
import type { AccessMap } from '../store/index.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log/logger.ts';
import { FileTailer, type TailPosition } from './tailer.ts';
import { LineParser } from './parser.ts';
import { LoginRecorder } from './recorder.ts';

export interface FileWatchOptions {
  readonly path: string;
  readonly parserFactory: () => LineParser;
  readonly formatName: string;
  readonly map: AccessMap;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly grace: number;
  readonly trackLogout: boolean;
  readonly startAt: 'start' | 'end';
  readonly pollMs?: number;
  /** back-off between attempts to record a batch while the store fails (default 0.5 s doubling to 10 s) */
  readonly retryMs?: { readonly min: number; readonly max: number };
}

/**
 * Batches in flight per file when the store can write conditionally (AccessMap.recordManyIf). Two already
 * overlap reading and parsing with a commit; a few more absorb a slow commit (an fsync on a busy disk)
 * without stalling the reader. Bounded: each holds at most one read (the tailer's chunkBytes) of lines.
 */
export const PIPELINE = 4;

const ROTATED = /[.-](?:\d+|\d{8}(?:-\d+)?|\d{4}-\d\d-\d\d(?:-\d+)?|old)(?:\.(?:gz|bz2|xz|zst))?$|\.(?:gz|bz2|xz|zst)$/;

/** Converts a shell-style glob of one path component (`*`, `?`, `[abc]`) to an anchored RegExp. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 1);
      if (end === -1) re += '\\[';
      else {
        // shell negation is `[!...]`; in a RegExp it is `[^...]`
        const body = glob.slice(i + 1, end).replace(/\\/g, '\\\\');
        re += `[${body.startsWith('!') ? `^${body.slice(1)}` : body}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

export function isGlob(path: string): boolean {
  return /[*?[]/.test(basename(path));
}

interface Followed {
  tailer: FileTailer;
  recorder: LoginRecorder;
}

export class FileWatch {
  readonly path: string;
  private readonly followed = new Map<string, Followed>();
  private rescanTimer: NodeJS.Timeout | undefined;
  /** the scan in progress: scans never overlap, so a file is never followed twice */
  private scanning: Promise<void> | undefined;
  private stopped = false;
  private started = false;
  /** cuts a back-off wait short at stop() */
  private readonly stopping = new AbortController();

  constructor(private readonly opts: FileWatchOptions) {
    this.path = resolve(opts.path);
  }

  async start(): Promise<void> {
    await this.scan();
    this.started = true;
    if (isGlob(this.path)) {
      // New files matching the glob are picked up on the poll.
      this.rescanTimer = setInterval(() => void this.scan(), this.opts.pollMs ?? 1000);
      this.rescanTimer.unref();
    }
    this.opts.logger.info(
      { event: 'watch_start', path: this.path, format: this.opts.formatName, files: [...this.followed.keys()] },
      `watching ${this.path} (${this.opts.formatName})${isGlob(this.path) ? `: ${this.followed.size} file(s) match` : ''}`,
    );
  }

  /** Every file followed now; `counters` for metrics and tests. */
  files(): Array<{ file: string; counters: FileTailer['counters']; logins: LoginRecorder['counters']; lag: () => Promise<number>; missing: boolean }> {
    return [...this.followed].map(([file, f]) => ({ file, counters: f.tailer.counters, logins: f.recorder.counters, lag: () => f.tailer.lag(), missing: f.tailer.missing }));
  }

  /** Reads whatever is new in every followed file now (tests; the watcher does this on its own). */
  async poll(): Promise<void> {
    await Promise.all([...this.followed.values()].map((f) => f.tailer.wake()));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    if (this.rescanTimer) clearInterval(this.rescanTimer);
    await this.scanning;
    for (const f of this.followed.values()) {
      await f.tailer.stop();
      f.recorder.close();
    }
    this.followed.clear();
  }

  /** Looks for files to follow (the glob's new matches); a scan already running is waited for, not repeated. */
  scan(): Promise<void> {
    this.scanning ??= this.scanOnce().finally(() => {
      this.scanning = undefined;
    });
    return this.scanning;
  }

  private async scanOnce(): Promise<void> {
    if (this.stopped) return;
    let files: string[];
    if (!isGlob(this.path)) files = [this.path];
    else {
      const dir = dirname(this.path);
      const re = globToRegExp(basename(this.path));
      try {
        files = (await readdir(dir)).filter((n) => re.test(n) && !ROTATED.test(n)).map((n) => resolve(dir, n));
      } catch (err) {
        this.opts.logger.warn({ event: 'watch_scan_failed', path: this.path, err }, `cannot list ${dir}; retrying`);
        return;
      }
    }
    for (const file of files) {
      if (this.followed.has(file) || this.stopped) continue;
      try {
        await this.follow(file);
      } catch (err) {
        // Its saved position could not be read (the store is down): not followed yet, tried again at the
        // next scan. Never skipped, and never thrown out of the rescan timer.
        if (!isGlob(this.path) && !this.started) throw err;
        this.opts.logger.error({ event: 'watch_follow_failed', path: file, err }, `cannot start following ${file} (its saved position is unreadable); retrying at the next scan`);
      }
    }
  }

  /**
   * Records one batch with its position, retrying with back-off while the store fails (Redis down, disk
   * full): the tailer waits meanwhile, so its position never moves past unrecorded logins. Gives up only
   * at stop(), by throwing: the tailer then steps back and the lines are read again at the next start.
   *
   * `first` is the attempt already queued, in order behind the batches before it (pipelining). Retries wait
   * for the batch before (`before`): its position is what this batch's conditional write expects. When that
   * batch needed retries itself, this batch's failure was only its consequence: retried at once, unlogged.
   * Resolves to whether the batch needed a retry.
   */
  private async recordWithRetry(file: string, lines: number, first: Promise<void>, before: Promise<boolean>, again: () => Promise<void>): Promise<boolean> {
    try {
      await first;
      return false;
    } catch (err) {
      if (this.stopped) throw err;
      let failure = err;
      let attempt = 0;
      const beforeRetried = await before.catch(() => true);
      if (this.stopped) throw err;
      if (beforeRetried) {
        try {
          await again();
          return true;
        } catch (e) {
          if (this.stopped) throw e;
          failure = e;
          attempt = 1;
        }
      }
      const { min, max } = this.opts.retryMs ?? { min: 500, max: 10_000 };
      for (; ; attempt++) {
        const delay = Math.min(max, min * 2 ** Math.min(attempt, 30));
        this.opts.logger.error(
          { event: 'watch_record_failed', path: file, attempt, lines, err: failure, retry_in_ms: delay },
          `could not record ${lines} line(s) of ${file}; the position stays put, retrying in ${delay} ms`,
        );
        try {
          await sleep(delay, undefined, { signal: this.stopping.signal });
        } catch {
          throw failure; // stopping: the tailer steps back, nothing is lost
        }
        try {
          await again();
          this.opts.logger.info({ event: 'watch_record_recovered', path: file, attempts: attempt + 2 }, `recorded the pending lines of ${file} after ${attempt + 2} attempts`);
          return true;
        } catch (e) {
          if (this.stopped) throw e;
          failure = e;
        }
      }
    }
  }

  private async follow(file: string): Promise<void> {
    const key = `tail:${file}`;
    const saved = await this.opts.map.getState(key);
    const recorder = new LoginRecorder({
      map: this.opts.map,
      clock: this.opts.clock,
      logger: this.opts.logger,
      source: `${this.opts.formatName}:${file}`,
      trackLogout: this.opts.trackLogout,
      grace: this.opts.grace,
    });
    const parser = this.opts.parserFactory();
    // With a store that writes conditionally, up to PIPELINE batches are in flight: the next chunk is read
    // and parsed while the previous batch commits. Each batch commits only if the saved position is still
    // the one the batch before it saved (`previous`), so a failed batch is never overtaken.
    const conditional = typeof this.opts.map.recordManyIf === 'function';
    /** the outcome of the batch handed over last (true: it needed retries) */
    let last: Promise<boolean> = Promise.resolve(false);
    const tailer = new FileTailer({
      path: file,
      resume: isPosition(saved) ? saved : undefined,
      startAt: this.opts.startAt,
      logger: this.opts.logger,
      // lines without any of the format's needles can make nothing: the tailer does not even decode them
      // (nor, without track_logout, the session ends: they too can make nothing then)
      needles: this.opts.trackLogout ? parser.needles : parser.needlesWithoutLogouts(),
      ...(this.opts.pollMs === undefined ? {} : { pollMs: this.opts.pollMs }),
      ...(conditional ? { pipeline: PIPELINE } : {}),
      onBatch: (batch) => {
        const now = this.opts.clock();
        const collected = recorder.collect(batch.lines.map((line) => parser.parse(line, now)));
        const state = { [key]: batch.position };
        const expect = conditional ? { [key]: batch.previous ?? saved } : undefined;
        // Not async: the first attempt is queued inside this call, so batches commit in the order handed over.
        const before = last;
        const done = this.recordWithRetry(file, batch.lines.length, recorder.write(collected, state, expect), before, () => recorder.write(collected, state, expect));
        last = done;
        return done.then(() => undefined);
      },
    });
    this.followed.set(file, { tailer, recorder });
    // resolves once the file is open at its saved position; its lines are read in the background
    await tailer.start();
  }
}

function isPosition(v: unknown): v is TailPosition {
  if (typeof v !== 'object' || v === null) return false;
  const p = v as Record<string, unknown>;
  return typeof p.dev === 'number' && typeof p.ino === 'number' && typeof p.offset === 'number' && typeof p.fingerprint === 'string' && typeof p.fpLen === 'number';
}
