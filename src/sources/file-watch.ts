// A [[watch]] with `path`: follows one file, or every file matching a glob in the last path component
// (`/var/log/dovecot/*.log`), each with its own rotation-safe tailer whose position is saved in the access
// map under `tail:<absolute path>` together with the grants its lines produced.
//
// Security: file content is untrusted (see parser.ts); file names come from configuration. Rotated
// siblings (`mail.log.1`, `mail.log-20261121`) are never followed as files of their own, so one login is
// not read twice; the tailer drains them itself when it needs to.

import { readdir } from 'node:fs/promises';
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
}

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

  constructor(private readonly opts: FileWatchOptions) {
    this.path = resolve(opts.path);
  }

  async start(): Promise<void> {
    await this.scan();
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
  files(): Array<{ file: string; counters: FileTailer['counters']; logins: LoginRecorder['counters'] }> {
    return [...this.followed].map(([file, f]) => ({ file, counters: f.tailer.counters, logins: f.recorder.counters }));
  }

  /** Reads whatever is new in every followed file now (tests; the watcher does this on its own). */
  async poll(): Promise<void> {
    await Promise.all([...this.followed.values()].map((f) => f.tailer.wake()));
  }

  async stop(): Promise<void> {
    this.stopped = true;
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
    for (const file of files) if (!this.followed.has(file) && !this.stopped) await this.follow(file);
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
    const tailer = new FileTailer({
      path: file,
      resume: isPosition(saved) ? saved : undefined,
      startAt: this.opts.startAt,
      logger: this.opts.logger,
      // lines without any of the format's needles can make nothing: the tailer does not even decode them
      needles: parser.needles,
      ...(this.opts.pollMs === undefined ? {} : { pollMs: this.opts.pollMs }),
      onBatch: async (batch) => {
        const now = this.opts.clock();
        const results = batch.lines.map((line) => parser.parse(line, now));
        await recorder.record(results, { [key]: batch.position });
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
