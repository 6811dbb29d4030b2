// A rotation-safe, resumable file tailer (ARCHITECTURE.md: the npm `tail` package loses lines on rotation
// and cannot resume, so relaygate has its own).
//
// How it follows one path:
// - reads complete lines from a byte offset, holding a partial last line until its newline arrives;
// - wakes on `fs.watch` of the *directory* (a watch on the file itself dies with a rename) and on a slow
//   poll as the fallback (network filesystems, missed events; `watch: false` polls only);
// - rename+create rotation: the open descriptor still reads the old file, which is drained to its end, and
//   kept open for `drainMs` for lines the writer appends before it reopens; then the new file is read from 0;
// - copytruncate: the file shrinks below our offset (or its first bytes change); the lines we had not read
//   yet went into the copy, so the copy is found by fingerprint among the rotated siblings and read from our
//   offset first (a warning when there is none: those lines, if any, are lost);
// - a path that disappears (deleted, or renamed with no new file yet) is read through the open descriptor;
//   after `drainMs` without a file at the path the descriptor is closed and a file appearing later is read
//   from its start;
// - resume: the position (dev, ino, offset, fingerprint of the first bytes) is handed to the consumer with
//   each batch, to be saved in the same transaction as the batch's lines' effects (exactly once). On start
//   the saved position is found again: in the file itself (same inode, same first bytes, not shorter); or,
//   when it was rotated while relaygate was stopped, in a rotated sibling (`mail.log.1`, `mail.log-20261121`;
//   by inode and fingerprint after a rename, by fingerprint after a copytruncate), which is drained from the
//   saved offset, followed by any sibling rotated after it (oldest first), before the file is read from 0.
//   A saved position that cannot be found (compressed, deleted, or an inode reused by a new file with other
//   first bytes) is logged as a warning and the file is read from 0.
// - after switching to another file (rotation, truncation, a file appearing) a batch with no lines carries
//   the new position, so a restart does not look for a file that is no longer needed.
// - a batch that fails (onBatch throws) is offered again at the next wake: the in-memory position steps back.
// - pipelining (`pipeline` > 1): the next chunk is read and parsed while earlier batches commit; batches are
//   handed over in order, each with the position of the one before (`previous`), so the consumer can refuse
//   to commit a batch whose predecessor failed; a failure steps back to where the failed batch began.
// - speed: reads start at 64 KiB and grow to `chunkBytes` while catching up (fewer, larger batches); with
//   `needles` (the parser's), lines holding none of them are found by a byte search and never decoded.
//
// Security: the file content is untrusted and only split into lines here (bounded: a "line" longer than
// maxLineBytes is dropped whole (counted in longLines; never parsed, since a cut line could end right after
// text a client chose), so a hostile writer cannot make relaygate
// buffer without limit).

import { open, readdir, stat, type FileHandle } from 'node:fs/promises';
import { watch, type FSWatcher, type Stats } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { createHash } from 'node:crypto';
import type { Logger } from '../log/logger.ts';

/** Where a tailer stands in a file. Saved by the consumer; handed back to resume. */
export interface TailPosition {
  readonly dev: number;
  readonly ino: number;
  /** byte offset just after the last complete line handed to the consumer */
  readonly offset: number;
  /** sha256 (hex, 16 chars) of the file's first `fpLen` bytes: tells inode reuse and truncation apart */
  readonly fingerprint: string;
  readonly fpLen: number;
}

export interface TailBatch {
  /** complete lines without their `\n` (or `\r\n`); empty when the batch only moves the position */
  readonly lines: readonly string[];
  /** the position after these lines: save it together with what the lines produced */
  readonly position: TailPosition;
  /**
   * the position of the batch handed over before this one (the resume position, or undefined, for the
   * first): what the consumer holds saved when every earlier batch committed
   */
  readonly previous: TailPosition | undefined;
  /** the file the lines came from (the rotated name when draining a rotated file) */
  readonly file: string;
}

export interface TailerOptions {
  readonly path: string;
  /** the saved position, if any */
  readonly resume?: TailPosition | undefined;
  /** where to begin without a saved position: the start (old lines are filtered by time later) or the end */
  readonly startAt?: 'start' | 'end';
  /**
   * called with each batch of lines, in order; resolves once the batch's effects (and its position) are
   * saved. A rejection makes the tailer offer the same lines again at the next wake.
   */
  readonly onBatch: (batch: TailBatch) => Promise<void>;
  /**
   * how many batches may be in flight (handed over, not yet resolved); default 1: the tailer waits for
   * each batch before reading on. More lets the next chunk be read and parsed while a batch commits, and
   * then the consumer must (a) start saving a batch synchronously inside onBatch, so batches commit in the
   * order they were handed over, and (b) refuse to save a batch when the position it holds is not the
   * batch's `previous` (so after a failed batch no later one commits a position past the failed lines).
   */
  readonly pipeline?: number;
  readonly logger: Logger;
  /** fallback poll interval (default 1000 ms) */
  readonly pollMs?: number;
  /** watch the directory with fs.watch (default true); false: the poll alone */
  readonly watch?: boolean;
  /** how long a rotated-away (or vanished) file is still read for late writes (default 5000 ms) */
  readonly drainMs?: number;
  /**
   * largest read, i.e. the most bytes of lines in one batch (default 4 MiB). Reads start at 64 KiB and
   * grow while they fill the buffer (catching up: fewer, larger batches, so fewer store transactions),
   * then shrink back once caught up (following: little memory per file).
   */
  readonly chunkBytes?: number;
  /** longest line handed over (default 16 KiB); longer lines are cut there */
  readonly maxLineBytes?: number;
  /**
   * Only lines holding at least one of these strings are handed over (LineParser.needles: a line without
   * any can only parse as nothing). The test is a byte search of the raw chunk, so the other lines are never
   * decoded — most of a mail log. They are counted (`counters.skipped`) and the position moves past them.
   */
  readonly needles?: readonly string[] | undefined;
}

const FP_MAX = 1024;
const SMALL_READ = 64 * 1024;
const ROTATED_SUFFIX = /^[.-](?:\d+|\d{8}(?:-\d+)?|\d{4}-\d\d-\d\d(?:-\d+)?|old)$/;

export async function fingerprintOf(fh: FileHandle, length: number): Promise<string> {
  if (length <= 0) return '';
  const buf = Buffer.alloc(length);
  const { bytesRead } = await fh.read(buf, 0, length, 0);
  return createHash('sha256').update(buf.subarray(0, bytesRead)).digest('hex').slice(0, 16);
}

interface OpenFile {
  fh: FileHandle;
  name: string;
  dev: number;
  ino: number;
  /** file offset of the first byte not handed over (complete lines only) */
  offset: number;
  /** bytes of an unfinished last line, read from `offset` on (at most maxLineBytes) */
  partial: Buffer;
  /** rotated away, read only for late writes: its batches carry the position of the file being followed */
  rotatedAway?: boolean;
  /** inside an over-long line whose head was already handed over */
  skipping: boolean;
  fingerprint: string;
  fpLen: number;
  /** a batch must carry this file's position even if it has no lines (we just switched to it) */
  announce: boolean;
}

export class FileTailer {
  readonly path: string;
  private readonly opts: Required<Omit<TailerOptions, 'resume' | 'needles'>> & { resume: TailPosition | undefined };
  /** batches handed over and not yet settled, oldest first; all of one file (see readToEnd) */
  private readonly inflight: InFlight[] = [];
  /** the position of the last batch handed over: the `previous` of the next one */
  private handed: TailPosition | undefined;
  /** the needles as UTF-8 bytes; undefined: every line is handed over */
  private readonly needles: readonly Buffer[] | undefined;
  private current: OpenFile | undefined;
  /** rotated files (a copy, or the file renamed while stopped) read to their end before `current` */
  private readonly backlog: OpenFile[] = [];
  /** rotated-away files still read for late writes until `until` */
  private readonly draining: Array<{ file: OpenFile; until: number }> = [];
  /** since when the path has been missing while `current` is open */
  private missingSince: number | undefined;
  private watcher: FSWatcher | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private running = false;
  private busy: Promise<void> = Promise.resolve();
  private again = false;
  private stopped = false;
  /** the saved position was looked up (retried at each wake until it succeeds: never skipped) */
  private initialized = false;
  private onOpened: (() => void) | undefined;
  private buf: Buffer;
  private readonly minBuf: number;
  private readonly maxBuf: number;
  /** counters for metrics and tests */
  readonly counters = { lines: 0, skipped: 0, bytes: 0, rotations: 0, truncations: 0, longLines: 0, resumedFromRotated: 0, lost: 0, errors: 0 };

  constructor(opts: TailerOptions) {
    this.path = opts.path;
    this.opts = {
      startAt: 'start',
      pollMs: 1000,
      watch: true,
      drainMs: 5000,
      chunkBytes: 4 * 1024 * 1024,
      maxLineBytes: 16 * 1024,
      ...opts,
      pipeline: Math.max(1, Math.floor(opts.pipeline ?? 1)),
      resume: opts.resume,
    };
    this.handed = opts.resume;
    const needles = opts.needles;
    // a needle with a newline could never be inside one line: filtering would drop lines wrongly
    this.needles = needles && needles.length > 0 && needles.every((n) => n !== '' && !n.includes('\n')) ? needles.map((n) => Buffer.from(n, 'utf8')) : undefined;
    // the held partial line (<= maxLineBytes) is copied to the front of the read buffer
    this.minBuf = Math.max(Math.min(SMALL_READ, this.opts.chunkBytes), 2 * this.opts.maxLineBytes + 1);
    this.maxBuf = Math.max(this.opts.chunkBytes, this.minBuf);
    this.buf = Buffer.allocUnsafe(this.minBuf);
  }

  /**
   * Opens the file at the saved position (finding a file rotated while stopped) and starts following it.
   * Resolves once the files are open; the lines are read in the background (`wake()` resolves when caught up).
   */
  async start(): Promise<void> {
    if (this.running || this.stopped) return;
    this.running = true;
    // Watch first: an append during the first pass wakes one more pass after it.
    if (this.opts.watch) {
      const base = basename(this.path);
      try {
        this.watcher = watch(dirname(this.path), { persistent: false }, (_event, name) => {
          if (name === null || String(name).startsWith(base)) void this.wake();
        });
        this.watcher.on('error', (err) => this.opts.logger.warn({ event: 'tail_watch_error', path: this.path, err }, 'directory watch failed; polling only'));
      } catch (err) {
        this.opts.logger.warn({ event: 'tail_watch_error', path: this.path, err }, 'cannot watch the directory; polling only');
      }
    }
    this.pollTimer = setInterval(() => void this.wake(), this.opts.pollMs);
    this.pollTimer.unref();
    let signalOpened!: () => void;
    const opened = new Promise<void>((r) => (signalOpened = r));
    this.onOpened = signalOpened;
    // the first pass opens (finding the saved position) and reads; start() waits for the opening only
    await Promise.race([opened, this.schedule(() => this.readAvailable())]);
  }

  /** Reads whatever is new now; resolves when caught up. Tests and the watcher call it. */
  /**
   * Bytes written to the followed file and not yet handed over (its size minus the read offset), for
   * /metrics; 0 when no file is open. Read-only: one fstat of the open handle.
   */
  /** No file is open at the path (not created yet, or gone after a rotation and not back). */
  get missing(): boolean {
    return this.current === undefined;
  }

  async lag(): Promise<number> {
    const f = this.current;
    if (f === undefined) return 0;
    try {
      const st = await f.fh.stat();
      return Math.max(0, st.size - f.offset - f.partial.length);
    } catch {
      return 0;
    }
  }

  wake(): Promise<void> {
    if (!this.running) return this.busy;
    return this.schedule(() => this.readAvailable());
  }

  /** Stops following: the batch in progress finishes (its position saved by the consumer), then nothing more. */
  async stop(): Promise<void> {
    this.running = false;
    this.stopped = true;
    this.watcher?.close();
    this.watcher = undefined;
    if (this.pollTimer) clearInterval(this.pollTimer);
    await this.busy;
    for (const d of this.draining.splice(0)) await d.file.fh.close().catch(() => undefined);
    for (const b of this.backlog.splice(0)) await b.fh.close().catch(() => undefined);
    await this.current?.fh.close().catch(() => undefined);
    this.current = undefined;
  }

  /** Serializes work: one read pass at a time; wakes during a pass make one more pass after it. */
  private schedule(fn: () => Promise<void>): Promise<void> {
    if (this.again) return this.busy;
    this.again = true;
    this.busy = this.busy.then(async () => {
      this.again = false;
      if (this.stopped) return;
      try {
        await fn();
      } catch (err) {
        this.counters.errors++;
        this.opts.logger.error({ event: 'tail_error', path: this.path, err }, `error reading ${this.path}; retrying at the next wake`);
      }
    });
    return this.busy;
  }

  private async initialOpen(): Promise<void> {
    const cur = await this.openPath();
    try {
      await this.locate(cur);
    } catch (err) {
      await cur?.fh.close().catch(() => undefined);
      for (const b of this.backlog.splice(0)) await b.fh.close().catch(() => undefined);
      throw err;
    }
  }

  /** Finds the saved position: in `cur` (the file at the path now), or in rotated siblings (the backlog). */
  private async locate(cur: OpenFile | undefined): Promise<void> {
    const resume = this.opts.resume;
    if (resume === undefined) {
      if (cur) {
        if (this.opts.startAt === 'end') await this.moveTo(cur, (await cur.fh.stat()).size);
        this.current = cur;
      }
      return;
    }
    if (cur && cur.ino === resume.ino && cur.dev === resume.dev) {
      const size = (await cur.fh.stat()).size;
      if (size >= resume.offset && (await fingerprintOf(cur.fh, Math.min(resume.fpLen, size))) === resume.fingerprint) {
        Object.assign(cur, { offset: resume.offset, fingerprint: resume.fingerprint, fpLen: resume.fpLen, announce: false });
        this.current = cur;
        return;
      }
      // Same inode but shorter or other first bytes: truncated while we were stopped (the copy holds the
      // rest), or a new file that reused the inode (no sibling will match the fingerprint).
      this.counters.truncations++;
    }
    // Another file (or none) at the path: ours was rotated away while we were stopped.
    const found = await this.findRotated(resume, cur?.ino, true);
    if (found.length === 0) {
      this.counters.lost++;
      this.opts.logger.warn(
        { event: 'tail_resume_lost', path: this.path, offset: resume.offset },
        `${this.path}: the file read before the restart is gone (compressed, deleted, or truncated without a copy); lines after byte ${resume.offset} of it cannot be read; reading ${this.path} from the start`,
      );
    } else {
      this.counters.resumedFromRotated++;
      this.opts.logger.info(
        { event: 'tail_resume_rotated', path: this.path, files: found.map((f) => f.name), offset: resume.offset },
        `${this.path} was rotated while stopped; reading ${found[0]!.name} from byte ${resume.offset}${found.length > 1 ? ` and ${found.length - 1} newer rotated file(s)` : ''} first`,
      );
      this.backlog.push(...found);
    }
    this.current = cur;
  }

  /**
   * The rotated siblings to read: the one holding `pos` (opened at pos.offset) and, when `andNewer`, every
   * sibling modified after it (opened at 0, oldest first: rotations that happened after it while stopped).
   */
  private async findRotated(pos: TailPosition, skipIno: number | undefined, andNewer: boolean): Promise<OpenFile[]> {
    const dir = dirname(this.path);
    const base = basename(this.path);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return [];
    }
    const siblings: Array<{ name: string; st: Stats }> = [];
    for (const name of names) {
      if (!name.startsWith(base) || !ROTATED_SUFFIX.test(name.slice(base.length))) continue;
      const full = join(dir, name);
      const st = await statOrNull(full);
      if (st && st.isFile() && st.ino !== skipIno) siblings.push({ name: full, st });
    }
    let best: { name: string; st: Stats; byInode: boolean } | undefined;
    for (const s of siblings) {
      if (s.st.size < pos.offset) continue;
      const byInode = s.st.ino === pos.ino && s.st.dev === pos.dev;
      let matches: boolean;
      if (pos.fpLen === 0) matches = byInode; // nothing was read: only the inode can tell
      else {
        const fh = await open(s.name, 'r').catch(() => undefined);
        if (!fh) continue;
        matches = (await fingerprintOf(fh, pos.fpLen).finally(() => fh.close())) === pos.fingerprint;
      }
      if (!matches) continue;
      // a renamed file keeps its inode; among copies, the newest is the last copytruncate's
      if (!best || (byInode && !best.byInode) || (byInode === best.byInode && s.st.mtimeMs > best.st.mtimeMs)) best = { ...s, byInode };
    }
    if (!best) return [];
    const newer = andNewer ? siblings.filter((s) => s.name !== best.name && rotatedLater(s, best, base)).sort((a, b) => (rotatedLater(a, b, base) ? 1 : -1)) : [];
    const picked = [best, ...newer];
    const files: OpenFile[] = [];
    try {
      for (const [i, s] of picked.entries()) {
        const fh = await open(s.name, 'r').catch(() => undefined);
        if (!fh) continue;
        const file = newFile(fh, s.name, await fh.stat(), i === 0 ? pos.offset : 0);
        files.push(file);
        if (i === 0) Object.assign(file, { fingerprint: pos.fingerprint, fpLen: pos.fpLen });
        else await this.refreshFingerprint(file);
      }
    } catch (err) {
      for (const f of files) await f.fh.close().catch(() => undefined);
      throw err;
    }
    return files;
  }

  /** Opens the file now at the path (dev/ino taken from the descriptor, so a rename in between cannot mislead). */
  private async openPath(): Promise<OpenFile | undefined> {
    let fh: FileHandle;
    try {
      fh = await open(this.path, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const st = await fh.stat();
    if (!st.isFile()) {
      await fh.close();
      throw new Error(`${this.path} is not a regular file`);
    }
    const f = newFile(fh, this.path, st, 0);
    f.announce = true;
    return f;
  }

  private async moveTo(f: OpenFile, offset: number): Promise<void> {
    f.offset = offset;
    f.partial = Buffer.alloc(0);
    f.skipping = false;
    f.fpLen = 0;
    f.fingerprint = '';
    await this.refreshFingerprint(f);
  }

  private async readAvailable(): Promise<void> {
    if (!this.initialized) {
      await this.initialOpen();
      this.initialized = true;
      this.onOpened?.();
    }
    const now = Date.now();
    // Files rotated away: read late writes, close them after drainMs.
    for (let i = 0; i < this.draining.length; ) {
      const d = this.draining[i]!;
      const last = now >= d.until;
      if (!(await this.readToEnd(d.file, last))) return;
      if (last) {
        await d.file.fh.close().catch(() => undefined);
        this.draining.splice(i, 1);
      } else i++;
    }

    // Lines of rotated files are older than the current file's: always read them first.
    if (!(await this.readBacklog())) return;
    const st = await statOrNull(this.path);
    const cur = this.current;
    if (cur && st && (st.ino !== cur.ino || st.dev !== cur.dev)) {
      // rename rotation: finish the old file, keep it for late writes, start the new one at 0
      if (!(await this.readToEnd(cur, false))) return;
      this.counters.rotations++;
      this.current = undefined;
      this.missingSince = undefined;
      this.draining.push({ file: { ...cur, name: `${this.path} (rotated)`, rotatedAway: true }, until: now + this.opts.drainMs });
      this.opts.logger.info({ event: 'tail_rotated', path: this.path }, `${this.path} rotated (new inode); old file drained, reading the new one from the start`);
    } else if (cur && !st) {
      // deleted, or renamed and not yet recreated: the descriptor still reads it
      this.missingSince ??= now;
      const gone = now - this.missingSince >= this.opts.drainMs;
      if (!(await this.readToEnd(cur, gone))) return;
      if (gone) {
        this.current = undefined;
        this.missingSince = undefined;
        await cur.fh.close().catch(() => undefined);
        this.opts.logger.info({ event: 'tail_vanished', path: this.path }, `${this.path} is gone; reading it from the start when it appears again`);
      }
      return;
    } else if (cur && st) {
      this.missingSince = undefined;
      const size = (await cur.fh.stat()).size;
      if (size < cur.offset + cur.partial.length || (cur.fpLen > 0 && (await fingerprintOf(cur.fh, cur.fpLen)) !== cur.fingerprint)) {
        // copytruncate: what we had not read yet is in the copy
        this.counters.truncations++;
        const copy = await this.findRotated(this.positionOf(cur), cur.ino, false);
        if (copy.length > 0) {
          this.opts.logger.info({ event: 'tail_truncated', path: this.path, copy: copy[0]!.name, offset: cur.offset }, `${this.path} truncated (copytruncate); reading the rest from ${copy[0]!.name}, then the file from the start`);
          this.backlog.push(...copy);
        } else {
          this.counters.lost++;
          this.opts.logger.warn(
            { event: 'tail_truncated_no_copy', path: this.path, offset: cur.offset },
            `${this.path} truncated and no rotated copy holds our position (byte ${cur.offset}): lines written between the last read and the truncation, if any, are lost`,
          );
        }
        await this.moveTo(cur, 0);
        cur.announce = true;
      }
    }

    if (!(await this.readBacklog())) return;
    if (!this.current && st) this.current = await this.openPath();
    if (this.current) await this.readToEnd(this.current, false);
  }

  /** Reads the rotated files of the backlog to their end and closes them; false when stopped first. */
  private async readBacklog(): Promise<boolean> {
    while (this.backlog.length > 0) {
      const b = this.backlog[0]!;
      if (!(await this.readToEnd(b, true))) return false;
      this.backlog.shift();
      await b.fh.close().catch(() => undefined);
    }
    return true;
  }

  private positionOf(f: OpenFile): TailPosition {
    if (f.rotatedAway) f = this.backlog[0] ?? this.current ?? f;
    return { dev: f.dev, ino: f.ino, offset: f.offset, fingerprint: f.fingerprint, fpLen: f.fpLen };
  }

  /**
   * Reads complete lines to the end of the file and hands them over batch by batch (`final`: the file will
   * not grow any more, so an unterminated last line is complete). False when stopped before the end.
   * Every batch handed over has settled when this returns (or throws): batches in flight never span files.
   */
  private async readToEnd(f: OpenFile, final: boolean): Promise<boolean> {
    let ok: boolean;
    try {
      ok = await this.readLines(f, final);
    } catch (err) {
      // A read error with batches in flight: let them settle first (a failed one steps back itself).
      await this.settle().catch(() => undefined);
      throw err;
    }
    await this.settle();
    return ok;
  }

  private async readLines(f: OpenFile, final: boolean): Promise<boolean> {
    const max = this.opts.maxLineBytes;
    for (;;) {
      if (this.stopped) return false;
      const buf = this.buf;
      const held = f.partial.length;
      if (held > 0) f.partial.copy(buf, 0);
      const { bytesRead } = await f.fh.read(buf, held, buf.length - held, f.offset + held);
      if (bytesRead === buf.length - held && buf.length < this.maxBuf) {
        this.buf = Buffer.allocUnsafe(Math.min(this.maxBuf, buf.length * 4)); // catching up: read more at once
      } else if (bytesRead < (buf.length - held) / 8 && buf.length > this.minBuf) this.buf = Buffer.allocUnsafe(this.minBuf); // caught up
      if (bytesRead === 0) break;
      this.counters.bytes += bytesRead;
      const before = snapshot(f);
      // `data` starts at file offset f.offset: the held partial line, then what was just read.
      const end = held + bytesRead;
      const lines: string[] = [];
      let start = 0;
      let complete = 0;
      const lastNl = buf.lastIndexOf(10, end - 1);
      if (lastNl !== -1) {
        if (f.skipping) {
          // the tail of an over-long line ends at the first newline: not a line of its own
          start = buf.indexOf(10) + 1;
          f.skipping = false;
        }
        if (start <= lastNl) complete = this.needles ? this.pickLines(buf, start, lastNl, lines) : this.splitLines(buf, start, lastNl, lines);
        start = lastNl + 1;
      }
      let consumed = start;
      if (f.skipping) consumed = end;
      else if (end - start > max) {
        // A line longer than any log line relaygate cares about is dropped whole: its head, cut right after
        // text a client chose, could look like a complete login line (the IP is often the last field).
        this.counters.longLines++;
        f.skipping = true;
        consumed = end;
      }
      // The lines are strings now: the read buffer is free for the next read while this batch commits.
      f.partial = consumed < end ? Buffer.from(buf.subarray(consumed, end)) : EMPTY;
      f.offset += consumed;
      await this.refreshFingerprint(f);
      if (complete > 0 || lines.length > 0 || f.announce) await this.hand(f, lines, before, Math.max(complete, lines.length), Math.max(0, complete - lines.length));
    }
    if (final && (f.partial.length > 0 || f.skipping)) {
      const line = f.partial.length > 0 ? decodeLine(f.partial, 0, f.partial.length) : undefined;
      const before = snapshot(f);
      f.offset += f.partial.length;
      f.partial = EMPTY;
      f.skipping = false;
      await this.refreshFingerprint(f);
      if (line !== undefined) await this.hand(f, [line], before, 1, 0);
    }
    if (f.announce) await this.hand(f, [], snapshot(f), 0, 0);
    return true;
  }

  /**
   * Hands one batch to the consumer. With `pipeline` > 1 it does not wait for the batch to commit, only
   * for the oldest one once `pipeline` batches are in flight, so the next chunk is read and parsed while
   * the previous batch commits; `settle()` deals with the outcomes in order.
   */
  private async hand(f: OpenFile, lines: string[], before: Snapshot, counted: number, skipped: number): Promise<void> {
    const position = this.positionOf(f);
    const previous = this.handed;
    let done: Promise<void>;
    try {
      done = this.opts.onBatch({ lines, position, previous, file: f.name });
    } catch (err) {
      done = Promise.reject(err);
    }
    this.handed = position;
    f.announce = false;
    this.inflight.push({ outcome: done.then(() => undefined, (err: unknown) => ({ err })), f, before, previous, counted, skipped });
    if (this.inflight.length >= this.opts.pipeline) await this.settle(this.inflight.length - this.opts.pipeline + 1);
  }

  /**
   * Waits for the oldest `n` batches in flight (default: all), oldest first, and counts their lines. At the
   * first failure it waits for every later batch too, steps back to where the failed batch began (the same
   * lines are offered again at the next wake: nothing is lost) and throws. The later batches cannot have
   * committed a position past the failed one's lines: each carries `previous`, the position the batch
   * before it saved, and a consumer with pipeline > 1 must refuse to commit when that is not what it holds.
   */
  private async settle(n = Infinity): Promise<void> {
    for (; n > 0 && this.inflight.length > 0; n--) {
      const b = this.inflight[0]!;
      const failed = await b.outcome;
      if (failed !== undefined) {
        const later = this.inflight.splice(0);
        await Promise.all(later.map((x) => x.outcome));
        Object.assign(b.f, b.before);
        this.handed = b.previous;
        throw failed.err;
      }
      this.inflight.shift();
      this.counters.lines += b.counted;
      this.counters.skipped += b.skipped;
    }
  }

  /** Splits buf[start..lastNl] (lastNl is a newline) into lines; lines over maxLineBytes are cut. Returns how many. */
  private splitLines(buf: Buffer, start: number, lastNl: number, out: string[]): number {
    const max = this.opts.maxLineBytes;
    // One decode of the whole region and a split is much faster than a decode per line. A line's UTF-16
    // length is at most its byte length, so only lines with length > max/3 may be over max bytes.
    const parts = buf.toString('utf8', start, lastNl).split('\n');
    const maybeLong = max / 3;
    for (let i = 0; i < parts.length; i++) {
      let line = parts[i]!;
      if (line.length > maybeLong && Buffer.byteLength(line) > max) {
        this.counters.longLines++; // dropped whole (see readToEnd): a cut line must never be parsed as a login
        continue;
      }
      if (line.charCodeAt(line.length - 1) === 13) line = line.slice(0, -1); // CRLF logs
      out.push(line);
    }
    return parts.length;
  }

  /**
   * Like splitLines, but decodes only the lines holding a needle (found by byte search; a needle has no
   * newline, so each hit lies inside one line); returns how many complete lines buf[start..lastNl] holds.
   */
  private pickLines(buf: Buffer, start: number, lastNl: number, out: string[]): number {
    const region = buf.subarray(0, lastNl + 1); // bounds every search to the complete lines
    let count = 0;
    for (let i = region.indexOf(10, start); i !== -1; i = region.indexOf(10, i + 1)) count++;
    const needles = this.needles!;
    const starts: number[] = [];
    for (const needle of needles) {
      for (let hit = region.indexOf(needle, start); hit !== -1; ) {
        const ls = region.lastIndexOf(10, hit) + 1;
        const le = region.indexOf(10, hit);
        starts.push(ls < start ? start : ls);
        hit = region.indexOf(needle, le + 1);
      }
    }
    if (needles.length > 1) starts.sort((a, b) => a - b);
    const max = this.opts.maxLineBytes;
    let prev = -1;
    for (const ls of starts) {
      if (ls === prev) continue; // a line holding several needles
      prev = ls;
      const le = region.indexOf(10, ls);
      if (le - ls > max) this.counters.longLines++; // dropped whole: a cut line must never be parsed
      else out.push(decodeLine(buf, ls, le));
    }
    return count;
  }

  private async refreshFingerprint(f: OpenFile): Promise<void> {
    if (f.fpLen < FP_MAX && f.offset > f.fpLen) {
      f.fpLen = Math.min(FP_MAX, f.offset);
      f.fingerprint = await fingerprintOf(f.fh, f.fpLen);
    }
  }
}

const EMPTY = Buffer.alloc(0);

/** What a batch changes in an OpenFile: restored when the batch fails. */
type Snapshot = Pick<OpenFile, 'offset' | 'partial' | 'skipping' | 'fingerprint' | 'fpLen' | 'announce'>;

function snapshot(f: OpenFile): Snapshot {
  return { offset: f.offset, partial: f.partial, skipping: f.skipping, fingerprint: f.fingerprint, fpLen: f.fpLen, announce: f.announce };
}

/** A batch handed over whose commit has not been waited for yet. */
interface InFlight {
  /** undefined when the batch committed; the error when it failed (never rejects) */
  readonly outcome: Promise<{ err: unknown } | undefined>;
  readonly f: OpenFile;
  readonly before: Snapshot;
  readonly previous: TailPosition | undefined;
  readonly counted: number;
  readonly skipped: number;
}

function newFile(fh: FileHandle, name: string, st: Stats, offset: number): OpenFile {
  return { fh, name, dev: st.dev, ino: st.ino, offset, partial: EMPTY, skipping: false, fingerprint: '', fpLen: 0, announce: false };
}

function decodeLine(data: Buffer, start: number, end: number): string {
  if (end > start && data[end - 1] === 13) end--; // CRLF logs
  return data.toString('utf8', start, end);
}


/**
 * Whether rotated sibling `a` holds later lines than `b`: a later modification time, or, within one tick of
 * the file system's clock, the rotation suffix (`.1` is newer than `.2`; `-20261122` newer than `-20261121`).
 */
function rotatedLater(a: { name: string; st: Stats }, b: { name: string; st: Stats }, base: string): boolean {
  if (a.st.mtimeMs !== b.st.mtimeMs) return a.st.mtimeMs > b.st.mtimeMs;
  const sa = basename(a.name).slice(base.length + 1);
  const sb = basename(b.name).slice(base.length + 1);
  const num = /^\d{1,7}$/;
  if (num.test(sa) && num.test(sb)) return Number(sa) < Number(sb);
  if (!num.test(sa) && !num.test(sb) && /^\d/.test(sa) && /^\d/.test(sb)) return sa > sb;
  return false;
}

async function statOrNull(path: string): Promise<Stats | null> {
  try {
    return await stat(path);
  } catch {
    return null;
  }
}
