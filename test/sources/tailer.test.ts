// FileTailer against real files in a temp directory: rotation (rename+create, copytruncate), partial lines,
// fs.watch and the poll, resume from a saved position (unchanged, grown, rotated or truncated while
// stopped, rotated file gone, inode reuse), CRLF, over-long lines, empty/late/deleted files, a failing
// consumer, and stop() during a batch. Every wait is bounded.
import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, copyFile, mkdtemp, rename, rm, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { FileTailer, type TailBatch, type TailerOptions, type TailPosition } from '../../src/sources/tailer.ts';

let dir: string;
let file: string;
const tailers: FileTailer[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rg-tail-'));
  file = join(dir, 'x.log');
});
afterEach(async () => {
  for (const t of tailers.splice(0)) await t.stop();
  await rm(dir, { recursive: true, force: true });
});

interface Harness {
  tailer: FileTailer;
  lines: string[];
  batches: TailBatch[];
  /** the last position handed over (what the consumer would have saved) */
  position(): TailPosition | undefined;
  logs: Array<{ level: number; event?: string; msg: string }>;
}

function tail(opts: Partial<TailerOptions> = {}, onBatch?: (b: TailBatch) => Promise<void>): Harness {
  const lines: string[] = [];
  const batches: TailBatch[] = [];
  const logs: Harness['logs'] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void logs.push(JSON.parse(s)) });
  const tailer = new FileTailer({
    path: file,
    logger,
    pollMs: 3_600_000, // tests wake explicitly unless they test the watch or the poll
    watch: false,
    drainMs: 200,
    ...opts,
    onBatch: async (b) => {
      if (onBatch) await onBatch(b);
      batches.push(b);
      lines.push(...b.lines);
    },
  });
  tailers.push(tailer);
  return { tailer, lines, batches, logs, position: () => batches.at(-1)?.position };
}

async function waitFor(cond: () => boolean, timeoutMs = 3000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

async function started(h: Harness): Promise<Harness> {
  await h.tailer.start();
  await h.tailer.wake();
  return h;
}

const L = (...names: string[]) => names.map((n) => `${n}\n`).join('');

test('reads existing lines, then appended ones; the position is the end of the last complete line', async () => {
  await writeFile(file, L('a', 'b'));
  const h = await started(tail());
  assert.deepEqual(h.lines, ['a', 'b']);
  await appendFile(file, L('c'));
  await h.tailer.wake();
  assert.deepEqual(h.lines, ['a', 'b', 'c']);
  const st = await stat(file);
  assert.deepEqual(h.position(), { dev: st.dev, ino: st.ino, offset: 6, fingerprint: h.position()!.fingerprint, fpLen: 6 });
  assert.match(h.position()!.fingerprint, /^[0-9a-f]{16}$/);
});

test('a partial last line is held until its newline arrives', async () => {
  await writeFile(file, 'first\nsecond ha');
  const h = await started(tail());
  assert.deepEqual(h.lines, ['first']);
  await h.tailer.wake();
  assert.deepEqual(h.lines, ['first'], 'nothing new until the newline');
  assert.equal(h.position()!.offset, 6);
  await appendFile(file, 'lf\nthird');
  await h.tailer.wake();
  assert.deepEqual(h.lines, ['first', 'second half']);
  await appendFile(file, '\n');
  await h.tailer.wake();
  assert.deepEqual(h.lines, ['first', 'second half', 'third']);
});

test('many lines over many small reads arrive complete and in order', async () => {
  const want = Array.from({ length: 5000 }, (_, i) => `line ${i} ${'x'.repeat(i % 97)}`);
  await writeFile(file, want.map((l) => `${l}\n`).join(''));
  const h = await started(tail({ chunkBytes: 4096, maxLineBytes: 512 }));
  assert.deepEqual(h.lines, want);
  assert.ok(h.batches.length > 10, `several batches (${h.batches.length})`);
});

test('rename+create rotation: the old file is drained (late appends too), then the new one from 0', async () => {
  await writeFile(file, L('a1', 'a2'));
  const h = await started(tail({ drainMs: 400 }));
  await appendFile(file, L('a3'));
  await rename(file, `${file}.1`);
  await appendFile(`${file}.1`, L('a4')); // the writer has not reopened yet
  await h.tailer.wake(); // path missing: read through the descriptor
  assert.deepEqual(h.lines, ['a1', 'a2', 'a3', 'a4']);
  await writeFile(file, L('b1'));
  await h.tailer.wake();
  assert.deepEqual(h.lines, ['a1', 'a2', 'a3', 'a4', 'b1']);
  await appendFile(`${file}.1`, L('a5')); // a late line shortly after the rotation
  await appendFile(file, L('b2'));
  await h.tailer.wake();
  assert.deepEqual(h.lines.sort(), ['a1', 'a2', 'a3', 'a4', 'a5', 'b1', 'b2']);
  assert.equal(h.tailer.counters.rotations, 1);
  const st = await stat(file);
  assert.equal(h.position()!.ino, st.ino, 'late lines of the old file carry the new file position');
  assert.equal(h.position()!.offset, st.size);
  await sleep(450);
  await h.tailer.wake(); // drainMs over: the old file is closed
  await appendFile(`${file}.1`, L('too-late'));
  await h.tailer.wake();
  assert.ok(!h.lines.includes('too-late'));
});

test('rename rotation with the new file already written before the next wake', async () => {
  await writeFile(file, L('a1'));
  const h = await started(tail());
  await appendFile(file, L('a2'));
  await rename(file, `${file}.1`);
  await writeFile(file, L('b1', 'b2'));
  await h.tailer.wake();
  assert.deepEqual(h.lines, ['a1', 'a2', 'b1', 'b2']);
});

test('copytruncate: lines written between the last read and the truncation are read from the copy', async () => {
  await writeFile(file, L('a1', 'a2'));
  const h = await started(tail());
  await appendFile(file, L('a3', 'a4')); // not read yet
  await appendFile(file, 'a5-part'); // and a partial line
  await copyFile(file, `${file}.1`);
  await truncate(file, 0);
  await appendFile(file, L('b1'));
  await h.tailer.wake();
  assert.deepEqual(h.lines, ['a1', 'a2', 'a3', 'a4', 'a5-part', 'b1']);
  assert.equal(h.tailer.counters.truncations, 1);
  const st = await stat(file);
  assert.deepEqual([h.position()!.ino, h.position()!.offset], [st.ino, st.size]);
  await appendFile(file, L('b2'));
  await h.tailer.wake();
  assert.deepEqual(h.lines.slice(-2), ['b1', 'b2']);
});

test('copytruncate: the copy is found by fingerprint among older rotated files', async () => {
  await writeFile(`${file}.2`, L('old1', 'old2', 'old3', 'old4', 'old5', 'old6'));
  await writeFile(file, L('a1', 'a2'));
  const h = await started(tail());
  await appendFile(file, L('a3'));
  await rename(`${file}.2`, `${file}.3`);
  await copyFile(file, `${file}.2`);
  await writeFile(`${file}.1`, L('z1', 'z2', 'z3', 'z4'));
  await truncate(file, 0);
  // refilled past our old offset before we look: the fingerprint tells
  await appendFile(file, L('b1-longer-than-before', 'b2'));
  await h.tailer.wake();
  assert.deepEqual(h.lines, ['a1', 'a2', 'a3', 'b1-longer-than-before', 'b2']);
});

test('copytruncate with no copy left: a warning, then the file from the start', async () => {
  await writeFile(file, L('a1', 'a2'));
  const h = await started(tail());
  await truncate(file, 0);
  await appendFile(file, L('b1'));
  await h.tailer.wake();
  assert.deepEqual(h.lines, ['a1', 'a2', 'b1']);
  assert.ok(h.logs.some((l) => l.event === 'tail_truncated_no_copy' && l.level === 40));
});

test('fs.watch on the directory: an append is seen without wake() (the poll is an hour)', async () => {
  await writeFile(file, L('a'));
  const h = tail({ watch: true, pollMs: 3_600_000 });
  await h.tailer.start();
  await waitFor(() => h.lines.length === 1, 3000, 'the first line');
  const t0 = Date.now();
  await appendFile(file, L('b'));
  await waitFor(() => h.lines.length === 2, 2000, 'the watch to report the append');
  assert.deepEqual(h.lines, ['a', 'b']);
  await rename(file, `${file}.1`);
  await writeFile(file, L('c'));
  await waitFor(() => h.lines.length === 3, 2000, 'the watch to report the rotation');
  assert.deepEqual(h.lines, ['a', 'b', 'c']);
  assert.ok(Date.now() - t0 < 4000);
});

test('the poll alone follows the file when the watch is disabled', async () => {
  await writeFile(file, L('a'));
  const slow = tail({ watch: false, pollMs: 3_600_000 });
  await slow.tailer.start();
  await waitFor(() => slow.lines.length === 1, 3000, 'the first line');
  await appendFile(file, L('b'));
  await sleep(300);
  assert.deepEqual(slow.lines, ['a'], 'no watch, no poll: nothing seen (the watch really is off)');
  await slow.tailer.stop();

  const h = tail({ watch: false, pollMs: 30 });
  await h.tailer.start();
  await waitFor(() => h.lines.length === 2, 3000, 'the poll');
  await appendFile(file, L('c'));
  await waitFor(() => h.lines.length === 3, 3000, 'the poll');
  assert.deepEqual(h.lines, ['a', 'b', 'c']);
});

// ---- resume ----

async function firstRun(content: string, opts: Partial<TailerOptions> = {}): Promise<TailPosition> {
  await writeFile(file, content);
  const h = await started(tail(opts));
  const pos = h.position();
  await h.tailer.stop();
  assert.ok(pos);
  return pos;
}

test('resume: restart with no change reads nothing, then only what is appended', async () => {
  const pos = await firstRun(L('a', 'b'));
  const h = await started(tail({ resume: pos }));
  assert.deepEqual(h.lines, []);
  await appendFile(file, L('c'));
  await h.tailer.wake();
  assert.deepEqual(h.lines, ['c']);
});

test('resume: restart after the file grew reads exactly the new lines', async () => {
  await writeFile(file, L('a', 'b'));
  const h1 = await started(tail());
  await appendFile(file, 'c-part'); // a partial line is not part of the position
  await h1.tailer.wake();
  const pos = h1.position()!;
  await h1.tailer.stop();
  assert.equal(pos.offset, 4);
  await appendFile(file, L('-done', 'd'));
  const h = await started(tail({ resume: pos }));
  assert.deepEqual(h.lines, ['c-part-done', 'd']);
});

test('resume: renamed while stopped — the rotated file from the saved offset, then the new file from 0', async () => {
  const pos = await firstRun(L('a1', 'a2'));
  await appendFile(file, L('a3', 'a4'));
  await rename(file, `${file}.1`);
  await writeFile(file, L('b1'));
  const h = await started(tail({ resume: pos }));
  assert.deepEqual(h.lines, ['a3', 'a4', 'b1']);
  assert.equal(h.tailer.counters.resumedFromRotated, 1);
  const st = await stat(file);
  assert.deepEqual([h.position()!.ino, h.position()!.offset], [st.ino, st.size]);
});

test('resume: renamed while stopped with a date suffix, and the new file not created yet', async () => {
  const pos = await firstRun(L('a1'));
  await appendFile(file, L('a2'));
  await rename(file, `${file}-20261121`);
  const h = await started(tail({ resume: pos }));
  assert.deepEqual(h.lines, ['a2']);
  await writeFile(file, L('b1'));
  await h.tailer.wake();
  assert.deepEqual(h.lines, ['a2', 'b1']);
});

test('resume: rotated twice while stopped — the older rotated file from the offset, the newer from 0, then the new file', async () => {
  const pos = await firstRun(L('a1'));
  await appendFile(file, L('a2'));
  await rename(file, `${file}.1`);
  await writeFile(file, L('b1', 'b2'));
  await sleep(20); // distinct modification times
  await rename(`${file}.1`, `${file}.2`);
  await rename(file, `${file}.1`);
  await writeFile(file, L('c1'));
  const h = await started(tail({ resume: pos }));
  assert.deepEqual(h.lines, ['a2', 'b1', 'b2', 'c1']);
});

test('resume: copytruncate while stopped — the copy from the saved offset, then the file from 0', async () => {
  const pos = await firstRun(L('a1', 'a2'));
  await appendFile(file, L('a3'));
  await copyFile(file, `${file}.1`);
  await truncate(file, 0);
  await appendFile(file, L('b1'));
  const h = await started(tail({ resume: pos }));
  assert.deepEqual(h.lines, ['a3', 'b1']);
});

test('resume: copytruncate while stopped, the file already longer again than the saved offset', async () => {
  const pos = await firstRun(L('a1', 'a2'));
  await appendFile(file, L('a3'));
  await copyFile(file, `${file}.1`);
  await truncate(file, 0);
  await appendFile(file, L('b1-is-a-longer-line', 'b2'));
  const h = await started(tail({ resume: pos }));
  assert.deepEqual(h.lines, ['a3', 'b1-is-a-longer-line', 'b2']);
});

test('resume: the rotated file is gone (compressed) — a warning, then the new file from 0', async () => {
  const pos = await firstRun(L('a1', 'a2'));
  await appendFile(file, L('a3'));
  await rename(file, `${file}.1.gz`); // stands for gzip: not a file the tailer can read
  await writeFile(file, L('b1'));
  const h = await started(tail({ resume: pos }));
  assert.deepEqual(h.lines, ['b1']);
  const warn = h.logs.find((l) => l.event === 'tail_resume_lost');
  assert.ok(warn && warn.level === 40, 'warned');
  assert.match(warn.msg, /cannot be read/);
});

test('resume: inode reuse — a new file with our inode but other first bytes is read from 0', async () => {
  const pos = await firstRun(L('a1', 'a2', 'a3'));
  await unlink(file);
  await writeFile(file, L('new1', 'new2', 'new3', 'new4'));
  const st = await stat(file);
  // the new file got the old inode (the kernel may or may not reuse it; the tailer sees this either way)
  const reused: TailPosition = { ...pos, dev: st.dev, ino: st.ino };
  assert.ok(st.size >= reused.offset, 'the new file is not shorter: only the fingerprint can tell');
  const h = await started(tail({ resume: reused }));
  assert.deepEqual(h.lines, ['new1', 'new2', 'new3', 'new4']);
  assert.ok(h.logs.some((l) => l.event === 'tail_resume_lost'));
});

test('resume: the saved position is saved again after a rotation (a batch with no lines)', async () => {
  await writeFile(file, L('a1'));
  const h = await started(tail());
  await rename(file, `${file}.1`);
  await writeFile(file, '');
  await h.tailer.wake();
  const st = await stat(file);
  assert.deepEqual(h.batches.at(-1)!.lines, []);
  assert.deepEqual([h.position()!.ino, h.position()!.offset], [st.ino, 0]);
  await h.tailer.stop();
  await unlink(`${file}.1`); // the old file may go: the restart does not need it
  await appendFile(file, L('b1'));
  const h2 = await started(tail({ resume: h.position() }));
  assert.deepEqual(h2.lines, ['b1']);
  assert.ok(!h2.logs.some((l) => l.event === 'tail_resume_lost'));
});

test('startAt end: only lines appended after the start', async () => {
  await writeFile(file, L('old1', 'old2'));
  const h = await started(tail({ startAt: 'end' }));
  assert.deepEqual(h.lines, []);
  await appendFile(file, L('new'));
  await h.tailer.wake();
  assert.deepEqual(h.lines, ['new']);
});

// ---- line shapes and file states ----

test('CRLF lines lose their \\r; a lone \\r inside a line stays', async () => {
  await writeFile(file, 'a\r\nb\rc\r\n\r\nd\n');
  const h = await started(tail());
  assert.deepEqual(h.lines, ['a', 'b\rc', '', 'd']);
});

test('over-long lines are dropped whole (never parsed half), the next line intact', async () => {
  const long = 'L'.repeat(1000);
  await writeFile(file, `short\n${long}\nnext\n`);
  const h = await started(tail({ maxLineBytes: 100 }));
  assert.deepEqual(h.lines, ['short', 'next']);
  // across reads and wakes: written in pieces, longer than the read size
  await appendFile(file, 'M'.repeat(150));
  await h.tailer.wake();
  await appendFile(file, 'M'.repeat(5000));
  await h.tailer.wake();
  await appendFile(file, `MMM\r\nafter\n`);
  await h.tailer.wake();
  assert.deepEqual(h.lines.slice(2), ['after']);
  assert.equal(h.tailer.counters.longLines, 2);
});

test('over-long lines spanning several reads (small read size)', async () => {
  await writeFile(file, `${'a'.repeat(700)}\nok1\n${'b'.repeat(90)}\n${'c'.repeat(101)}\nok2\n`);
  const h = await started(tail({ maxLineBytes: 100, chunkBytes: 256 }));
  assert.deepEqual(h.lines, ['ok1', 'b'.repeat(90), 'ok2']);
});

test('an over-long line of multi-byte characters is dropped, bytes counted not characters', async () => {
  await writeFile(file, `${'é'.repeat(100)}\nok\n`);
  const h = await started(tail({ maxLineBytes: 51 }));
  assert.deepEqual(h.lines, ['ok']);
  assert.equal(h.tailer.counters.longLines, 1);
});

test('an empty file, then lines', async () => {
  await writeFile(file, '');
  const h = await started(tail());
  assert.deepEqual(h.lines, []);
  await appendFile(file, L('a'));
  await h.tailer.wake();
  assert.deepEqual(h.lines, ['a']);
});

test('a file that appears later is read from its start', async () => {
  const h = await started(tail());
  assert.deepEqual(h.lines, []);
  await writeFile(file, L('a', 'b'));
  await h.tailer.wake();
  assert.deepEqual(h.lines, ['a', 'b']);
});

test('a deleted file: read to its end, no error, and a new file at the path is read from 0', async () => {
  await writeFile(file, L('a'));
  const h = await started(tail({ drainMs: 100 }));
  await appendFile(file, L('b'));
  await unlink(file);
  await h.tailer.wake();
  assert.deepEqual(h.lines, ['a', 'b']);
  await sleep(150);
  await h.tailer.wake(); // gone for longer than drainMs: closed
  await writeFile(file, L('c'));
  await h.tailer.wake();
  assert.deepEqual(h.lines, ['a', 'b', 'c']);
  assert.equal(h.tailer.counters.errors, 0);
});

// ---- the consumer ----

test('onBatch throwing: the same lines are offered again at the next wake, nothing lost or doubled', async () => {
  await writeFile(file, L('a', 'b'));
  let fail = 1;
  const offered: string[][] = [];
  const h = tail({}, async (b) => {
    offered.push([...b.lines]);
    if (fail-- > 0) throw new Error('store down');
  });
  await h.tailer.start(); // resolves once open; the first read runs on and fails
  await waitFor(() => h.tailer.counters.errors === 1, 3000, 'the failed batch');
  assert.deepEqual(h.lines, []);
  await appendFile(file, L('c'));
  await h.tailer.wake();
  assert.deepEqual(offered[0], ['a', 'b']);
  assert.deepEqual(h.lines, ['a', 'b', 'c']);
});

test('onBatch throwing while an over-long line is skipped does not turn its tail into a line', async () => {
  await writeFile(file, `${'x'.repeat(300)}`);
  let fail = 0;
  const h = tail({ maxLineBytes: 100, chunkBytes: 256 }, async () => {
    if (fail-- > 0) throw new Error('store down');
  });
  await started(h);
  assert.deepEqual(h.lines, []);
  await appendFile(file, `${'x'.repeat(50)}\nnext\n`);
  fail = 1;
  await h.tailer.wake();
  await h.tailer.wake();
  assert.deepEqual(h.lines, ['next']);
});

test('onBatch throwing while draining a copytruncate copy: retried from where it stopped', async () => {
  const many = Array.from({ length: 200 }, (_, i) => `a${i}`);
  await writeFile(file, L('first'));
  let failAt = -1;
  let calls = 0;
  const h = tail({ chunkBytes: 256, maxLineBytes: 64 }, async () => {
    if (calls++ === failAt) throw new Error('store down');
  });
  await started(h);
  await appendFile(file, L(...many));
  await copyFile(file, `${file}.1`);
  await truncate(file, 0);
  await appendFile(file, L('b1'));
  failAt = calls + 2; // the third batch of the copy fails
  await h.tailer.wake();
  await h.tailer.wake();
  assert.deepEqual(h.lines, ['first', ...many, 'b1']);
});

test('stop() waits for the batch in flight, and no batch starts after it', async () => {
  await writeFile(file, L('a'));
  let inBatch = false;
  let finished = 0;
  const h = tail({ chunkBytes: 256, maxLineBytes: 64 }, async () => {
    inBatch = true;
    await sleep(300);
    finished++;
    inBatch = false;
  });
  void h.tailer.start();
  await waitFor(() => inBatch, 3000, 'the batch to start');
  await appendFile(file, L(...Array.from({ length: 100 }, (_, i) => `more ${i}`)));
  void h.tailer.wake();
  const t0 = Date.now();
  await h.tailer.stop();
  assert.ok(Date.now() - t0 >= 200, 'stop waited');
  assert.equal(inBatch, false);
  const done = finished;
  assert.equal(done, 1);
  await sleep(400);
  assert.equal(finished, done, 'no batch after stop()');
  assert.deepEqual(h.lines, ['a'], 'the batch in flight completed; the next one never started');
});

// ---- pipelining: batches in flight while earlier ones commit ----

/** Same position (the fields a consumer saves). */
const samePos = (a: TailPosition | undefined, b: TailPosition | undefined): boolean => JSON.stringify(a) === JSON.stringify(b);

test('pipeline: several batches in flight, handed over in order, each naming the position before it', async () => {
  const want = Array.from({ length: 400 }, (_, i) => `line ${i} ${'p'.repeat(i % 40)}`);
  await writeFile(file, L(...want));
  let inFlight = 0;
  let most = 0;
  const h = tail({ chunkBytes: 1024, maxLineBytes: 200, pipeline: 3 }, async () => {
    most = Math.max(most, ++inFlight);
    await sleep(5); // a commit takes a while: the tailer reads on meanwhile
    inFlight--;
  });
  await started(h);
  assert.deepEqual(h.lines, want, 'every line once, in order');
  assert.equal(most, 3, 'up to `pipeline` batches in flight, never more');
  assert.equal(h.batches[0]!.previous, undefined, 'the first batch follows no saved position');
  for (let i = 1; i < h.batches.length; i++) assert.ok(samePos(h.batches[i]!.previous, h.batches[i - 1]!.position), `batch ${i} names the one before`);
  assert.equal(h.tailer.counters.lines, want.length, 'lines are counted once their batch settled');
  // a restart from the last position: the first batch names it
  const pos = h.position();
  await h.tailer.stop();
  await appendFile(file, L('after'));
  const h2 = await started(tail({ resume: pos, pipeline: 3 }));
  assert.deepEqual(h2.lines, ['after']);
  assert.ok(samePos(h2.batches[0]!.previous, pos));
});

test('pipeline: a failed batch steps back; a consumer refusing batches that do not follow its saved position loses nothing, doubles nothing', async () => {
  const want = Array.from({ length: 300 }, (_, i) => `line ${i} ${'q'.repeat(i % 30)}`);
  await writeFile(file, L(...want));
  // The store of a consumer with conditional writes: commits in order, after a delay, only when the saved
  // position is the batch's `previous`; the third batch fails once (a full disk, say).
  let saved: TailPosition | undefined;
  const committed: string[] = [];
  let calls = 0;
  let refused = 0;
  const consumer = (b: TailBatch): Promise<void> => {
    const n = ++calls;
    return sleep(3).then(() => {
      if (n === 3) throw new Error('ENOSPC: no space left on device');
      if (!samePos(b.previous, saved)) {
        refused++;
        throw new Error('conflict: the saved position is not this batch\'s previous');
      }
      saved = b.position;
      committed.push(...b.lines);
    });
  };
  const h = tail({ chunkBytes: 1024, maxLineBytes: 200, pipeline: 4 }, consumer);
  await h.tailer.start();
  await waitFor(() => h.tailer.counters.errors === 1, 3000, 'the failed batch');
  assert.ok(refused >= 1, 'batches already in flight behind the failed one were refused');
  assert.equal(committed.length, h.tailer.counters.lines, 'counted: only what committed');
  assert.deepEqual(committed, want.slice(0, committed.length), 'nothing committed past the failed batch');
  await h.tailer.wake(); // the failed batch's lines again, then the rest
  assert.deepEqual(committed, want, 'every line once, in order');
  assert.equal(saved!.offset, (await stat(file)).size);
  assert.equal(h.tailer.counters.lines, want.length);
});

test('pipeline: stop() waits for every batch in flight', async () => {
  await writeFile(file, L(...Array.from({ length: 300 }, (_, i) => `line ${i} ${'r'.repeat(20)}`)));
  let settled = 0;
  let handed = 0;
  const h = tail({ chunkBytes: 1024, maxLineBytes: 200, pipeline: 4 }, async () => {
    handed++;
    await sleep(20);
    settled++;
  });
  void h.tailer.start();
  await waitFor(() => handed >= 2, 3000, 'batches in flight');
  await h.tailer.stop();
  assert.equal(settled, handed, 'no batch is left in flight after stop()');
  await sleep(60);
  assert.equal(handed, settled, 'and none starts after it');
});

// ---- needles (lines that cannot match are never decoded) and read sizes ----

test('needles: only lines holding one are handed over, in order, once; the position moves past the others', async () => {
  const content = ['noise 1', 'a user=< login', 'noise 2', 'both user=< and Logged out', 'x Logged out', 'noise 3\r', 'crlf user=<\r', 'noise 4'];
  await writeFile(file, content.map((l) => `${l}\n`).join(''));
  const h = await started(tail({ needles: ['user=<', 'Logged out'] }));
  assert.deepEqual(h.lines, ['a user=< login', 'both user=< and Logged out', 'x Logged out', 'crlf user=<']);
  assert.equal(h.tailer.counters.lines, 8);
  assert.equal(h.tailer.counters.skipped, 4);
  assert.equal(h.position()!.offset, (await stat(file)).size);
  // only noise appended: no line handed over, but the position still moves (and is saved)
  await appendFile(file, L('noise 5', 'noise 6'));
  await h.tailer.wake();
  assert.equal(h.position()!.offset, (await stat(file)).size);
  assert.deepEqual(h.batches.at(-1)!.lines, []);
  const pos = h.position();
  await h.tailer.stop();
  await appendFile(file, L('noise 7', 'late user=<'));
  const h2 = await started(tail({ resume: pos, needles: ['user=<'] }));
  assert.deepEqual(h2.lines, ['late user=<']);
});

test('needles: lines split across reads, partial lines and over-long lines', async () => {
  const lines = Array.from({ length: 3000 }, (_, i) => (i % 7 === 0 ? `line ${i} has user=<u${i}> here` : `line ${i} ${'n'.repeat(i % 50)}`));
  await writeFile(file, lines.map((l) => `${l}\n`).join('') + 'partial user=<');
  const h = await started(tail({ needles: ['user=<'], chunkBytes: 1024, maxLineBytes: 100 }));
  assert.deepEqual(h.lines, lines.filter((l) => l.includes('user=<')));
  await appendFile(file, `x\n${'z'.repeat(50)}user=<${'z'.repeat(200)}\nok user=<\n`);
  await h.tailer.wake();
  assert.deepEqual(h.lines.slice(-2), ['partial user=<x', 'ok user=<'], 'the over-long line in between is dropped whole');
});

test('a needle holding a newline disables the filter instead of dropping lines', async () => {
  await writeFile(file, L('a', 'b'));
  const h = await started(tail({ needles: ['a\nb'] }));
  assert.deepEqual(h.lines, ['a', 'b']);
});

test('default read sizes: a 2 MB backlog in few batches, then single appends', async () => {
  const want = Array.from({ length: 20000 }, (_, i) => `${i} ${'y'.repeat(90)}`);
  await writeFile(file, want.map((l) => `${l}\n`).join(''));
  const h = await started(tail());
  assert.deepEqual(h.lines, want);
  assert.ok(h.batches.length <= 8, `reads grew while catching up (${h.batches.length} batches)`);
  await appendFile(file, L('one more'));
  await h.tailer.wake();
  assert.deepEqual(h.lines.at(-1), 'one more');
});
