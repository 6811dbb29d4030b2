// Rotation under load, end to end: the real daemon (`relaygate run`, a child process) follows a log that a
// writer in this process appends to at ~2,500 lines/s for 12 s (5% successful Dovecot logins, each from its
// own 10.x.y.z address), while the log is rotated several times by rename+create and by copytruncate, and
// the daemon is stopped with SIGTERM mid-run and started again while the writer goes on (two rotations,
// one of each kind, happen while it is down). At the end every login must be recorded exactly once: every
// address has a grant, every grant has count 1, and there is no other grant.
//
// Bounded: the writer stops by itself after RUN_MS; every wait has a deadline; the daemon is killed and the
// temp directory removed whatever happens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, open, readdir, rename, rm, stat, truncate, writeFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { openAccessMap } from '../../src/store/index.ts';
import { CidrSet } from '../../src/net/index.ts';
import { systemClock } from '../../src/clock.ts';
import { silentLogger } from '../../src/log/logger.ts';
import type { TailPosition } from '../../src/sources/tailer.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'src/main.ts');
const TSX = import.meta.resolve('tsx');

const RUN_MS = 12_000;
const RATE = 2_500; // lines/s (the requirement is >= 2,000)
const TICK_MS = 10;
const LOGIN_EVERY = 20; // 5%
const KEEP = 9; // rotated files kept (no compression: a compressed file is not readable, see tailer.ts)
/** rotations while the daemon runs, by time since the writer started */
const SCHEDULE: Array<{ at: number; kind: Rotation }> = [
  { at: 1_500, kind: 'rename' },
  { at: 3_000, kind: 'copytruncate' },
  { at: 4_200, kind: 'rename' },
  // 5,000: SIGTERM; while down: one copytruncate, one rename; then the daemon starts again
  { at: 8_500, kind: 'copytruncate' },
  { at: 9_700, kind: 'rename' },
  { at: 10_800, kind: 'copytruncate' },
];
const STOP_AT = 5_000;
const BURST = 100; // lines written while the daemon is frozen, before and after a rotation
const DOWN_MS = 1_000;

type Rotation = 'rename' | 'copytruncate';

function ts(): string {
  return new Date().toISOString().replace('Z', '000+00:00');
}

function ipOf(n: number): string {
  // unique per login, never .0 or .255, never in mynetworks or never_authorize
  const k = n + 1;
  return `10.${(k >> 14) & 255}.${(k >> 7) & 127}.${(k & 127) + 1}`;
}

const NOISE = [
  (i: number) => `postfix/smtpd[${1000 + (i % 50)}]: connect from unknown[198.51.100.${i % 250}]`,
  (i: number) => `postfix/smtpd[${1000 + (i % 50)}]: ${(i * 7919).toString(16).toUpperCase()}: client=unknown[198.51.100.${i % 250}]`,
  (i: number) => `postfix/cleanup[${2000 + (i % 20)}]: ${(i * 7919).toString(16).toUpperCase()}: message-id=<${i}@example.com>`,
  (i: number) => `postfix/qmgr[999]: ${(i * 7919).toString(16).toUpperCase()}: from=<u${i}@example.com>, size=${1000 + i}, nrcpt=1 (queue active)`,
  (i: number) => `postfix/smtpd[${1000 + (i % 50)}]: disconnect from unknown[198.51.100.${i % 250}] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5`,
  (i: number) => `dovecot: pop3-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<u${i}>, method=PLAIN, rip=198.51.100.${i % 250}, lip=192.0.2.1, session=<AbCdEf${i % 1000}>`,
  (i: number) => `dovecot: imap(u${i})<${3000 + (i % 100)}><Zx${i % 1000}AAAH>: Disconnected: Logged out in=120 out=830 deleted=0 expunged=0 trashed=0 hdr_count=0 hdr_bytes=0 body_count=0 body_bytes=0`,
  (i: number) => `dovecot: imap-login: Disconnected: Connection closed (no auth attempts in 0 secs): user=<>, rip=198.51.100.${i % 250}, lip=192.0.2.1, session=<Qq${i % 1000}>`,
];

/** The writer: a syslog daemon appending to the log (O_APPEND), plus logrotate. */
class Writer {
  lines = 0;
  logins = 0;
  readonly ips: string[] = [];
  readonly rotations = { rename: 0, copytruncate: 0, whileDown: 0, frozen: 0, lateLines: 0 };
  /** the running daemon, frozen around rotations */
  daemon: ChildProcess | undefined;
  private fh: FileHandle | undefined;
  private readonly queue: Array<{ kind: Rotation; done: () => void }> = [];
  down = false;

  constructor(private readonly path: string) {}

  /** Asks for a rotation at the next tick; resolves once done. */
  rotate(kind: Rotation): Promise<void> {
    return new Promise((done) => this.queue.push({ kind, done }));
  }

  private next(): string {
    const i = this.lines++;
    if (i % LOGIN_EVERY === LOGIN_EVERY - 1) {
      const ip = ipOf(this.logins++);
      this.ips.push(ip);
      const svc = i % 3 === 0 ? 'imap' : 'pop3';
      return `${ts()} mx dovecot: ${svc}-login: Login: user=<user${i}>, method=PLAIN, rip=${ip}, lip=192.0.2.1, mpid=${10000 + (i % 50000)}, session=<s${(i % 100000).toString(36)}xG7MtgZpV>\n`;
    }
    return `${ts()} mx ${NOISE[i % NOISE.length]!(i)}\n`;
  }

  private async write(n: number, fh = this.fh!): Promise<void> {
    let s = '';
    for (let k = 0; k < n; k++) s += this.next();
    await fh.write(s);
  }

  private async shift(): Promise<void> {
    for (let n = KEEP - 1; n >= 1; n--) await rename(`${this.path}.${n}`, `${this.path}.${n + 1}`).catch(() => undefined);
  }

  private async doRotate(kind: Rotation): Promise<void> {
    if (this.down) {
      this.rotations.whileDown++;
      await this.rotateNow(kind);
      return;
    }
    // While the daemon runs it reads within a millisecond of each write, so a rotation would rarely leave
    // unread lines behind. Freezing it (SIGSTOP) around a burst of lines and the rotation makes the race
    // certain: those lines are only in the rotated file (or the copy) when it wakes up again.
    const frozen = this.daemon?.kill('SIGSTOP') === true;
    try {
      await this.write(BURST);
      await this.rotateNow(kind);
      await this.write(BURST);
    } finally {
      if (frozen) this.daemon!.kill('SIGCONT');
    }
    if (frozen) this.rotations.frozen++;
  }

  private async rotateNow(kind: Rotation): Promise<void> {
    await this.shift();
    if (kind === 'rename') {
      this.rotations.rename++;
      await rename(this.path, `${this.path}.1`);
      // like a syslog daemon before its HUP: a few more lines still go to the old file, then it reopens
      await this.write(5);
      this.rotations.lateLines += 5;
      await this.fh!.close();
      this.fh = await open(this.path, 'a');
    } else {
      // logrotate's copytruncate: copy, then truncate the original. The writer is paused during the copy
      // and the truncate (nothing is written between the two), so no line is lost to logrotate's own race
      // (a line written after the copy and before the truncate exists in neither file) — not ours to fix.
      this.rotations.copytruncate++;
      await copyFile(this.path, `${this.path}.1`);
      await truncate(this.path, 0);
    }
  }

  async run(schedule: typeof SCHEDULE): Promise<void> {
    this.fh = await open(this.path, 'a');
    const t0 = Date.now();
    const todo = [...schedule];
    try {
      for (let guard = 0; guard < (RUN_MS / TICK_MS) * 4; guard++) {
        const elapsed = Date.now() - t0;
        if (elapsed >= RUN_MS) break;
        const due = Math.floor((elapsed * RATE) / 1000) - this.lines;
        if (due > 0) await this.write(due);
        while (todo.length > 0 && todo[0]!.at <= elapsed) await this.doRotate(todo.shift()!.kind);
        for (let q = this.queue.shift(); q; q = this.queue.shift()) {
          await this.doRotate(q.kind);
          q.done();
        }
        await sleep(TICK_MS);
      }
      const total = Math.floor((RUN_MS * RATE) / 1000) - this.lines;
      if (total > 0) await this.write(total);
    } finally {
      await this.fh.close();
      for (let q = this.queue.shift(); q; q = this.queue.shift()) q.done();
    }
  }
}

interface Daemon {
  child: ChildProcess;
  out: string[];
  exited: Promise<number | null>;
}

function startDaemon(config: string, cwd: string): Daemon {
  const child = spawn(process.execPath, ['--import', TSX, MAIN, 'run', '-c', config], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: string[] = [];
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    out.push(...parts);
  });
  child.stderr!.on('data', (d: Buffer) => out.push(`stderr: ${d.toString()}`));
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  return { child, out, exited };
}

async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

async function stopDaemon(d: Daemon, timeoutMs = 15_000): Promise<number | null> {
  if (d.child.exitCode !== null || d.child.signalCode !== null) return d.child.exitCode;
  d.child.kill('SIGTERM');
  const code = await Promise.race([d.exited, sleep(timeoutMs, 'timeout' as const, { ref: false })]);
  if (code === 'timeout') {
    d.child.kill('SIGKILL');
    throw new Error('the daemon did not stop within 15 s of SIGTERM');
  }
  return code;
}

function events(d: Daemon): string[] {
  return d.out.flatMap((l) => {
    try {
      const e = JSON.parse(l) as { event?: string };
      return e.event === undefined ? [] : [e.event];
    } catch {
      return [];
    }
  });
}

test('rotation under load with a restart in the middle: every login recorded exactly once', { timeout: 120_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rg-rotload-'));
  const daemons: Daemon[] = [];
  try {
    const logDir = join(dir, 'log');
    await mkdir(logDir);
    const log = join(logDir, 'mail.log');
    await writeFile(log, '');
    const config = join(dir, 'relaygate.toml');
    await writeFile(
      config,
      [`data_dir = ${JSON.stringify(join(dir, 'data'))}`, 'log_level = "info"', '', '[[watch]]', `path = ${JSON.stringify(log)}`, 'format = "dovecot"', 'prefix = "rfc3339"', ''].join('\n'),
    );
    const ready = async (d: Daemon) =>
      until(() => events(d).includes('components') || d.child.exitCode !== null, 30_000, 'the daemon to start').then(() => {
        assert.equal(d.child.exitCode, null, `the daemon exited early:\n${d.out.join('\n')}`);
      });

    const first = startDaemon(config, dir);
    daemons.push(first);
    await ready(first);

    const writer = new Writer(log);
    writer.daemon = first.child;
    const writing = writer.run(SCHEDULE);
    const control = (async () => {
      await sleep(STOP_AT);
      writer.daemon = undefined;
      const code = await stopDaemon(first);
      assert.equal(code, 0, `first daemon exit status\n${first.out.join('\n')}`);
      writer.down = true;
      await writer.rotate('copytruncate');
      await sleep(DOWN_MS / 2);
      await writer.rotate('rename');
      await sleep(DOWN_MS / 2);
      writer.down = false;
      const second = startDaemon(config, dir);
      daemons.push(second);
      await ready(second);
      writer.daemon = second.child;
    })();
    await Promise.all([writing, control]);
    const second = daemons[1]!;
    const written = { lines: writer.lines, logins: writer.logins };

    // Caught up: the saved position is the end of the current file and every login has a grant.
    const map = await openAccessMap({
      type: 'lmdb',
      path: join(dir, 'data', 'map'),
      grace: 1800,
      mynetworks: new CidrSet(['127.0.0.0/8']),
      neverAuthorize: new CidrSet([]),
      clock: systemClock,
      logger: silentLogger(),
      verify: false,
    });
    try {
      await until(
        async () => {
          const pos = (await map.getState(`tail:${log}`)) as TailPosition | undefined;
          const st = await stat(log);
          return pos !== undefined && pos.ino === st.ino && pos.offset === st.size && (await map.list()).length >= written.logins;
        },
        30_000,
        'the daemon to catch up',
      );
    } finally {
      await map.close();
    }
    assert.equal(await stopDaemon(second), 0, 'second daemon exit status');

    const final = await openAccessMap({
      type: 'lmdb',
      path: join(dir, 'data', 'map'),
      grace: 1800,
      mynetworks: new CidrSet(['127.0.0.0/8']),
      neverAuthorize: new CidrSet([]),
      clock: systemClock,
      logger: silentLogger(),
      verify: false,
    });
    let grants;
    try {
      grants = await final.list();
    } finally {
      await final.close();
    }
    const byIp = new Map(grants.map((g) => [g.ip, g.count]));
    const missing = writer.ips.filter((ip) => !byIp.has(ip));
    const doubled = grants.filter((g) => g.count !== 1).map((g) => `${g.ip}×${g.count}`);
    const written_ = new Set(writer.ips);
    const extra = grants.filter((g) => !written_.has(g.ip)).map((g) => g.ip);

    const ev = [...events(first), ...events(second)];
    const n = (e: string) => ev.filter((x) => x === e).length;
    const files = (await readdir(logDir)).length;
    t.diagnostic(
      `written: ${written.lines} lines in ${RUN_MS / 1000} s (${Math.round(written.lines / (RUN_MS / 1000))}/s), ${written.logins} logins (unique IPs); ` +
        `rotations: ${writer.rotations.rename} rename (each with 5 late lines to the old file), ${writer.rotations.copytruncate} copytruncate; ` +
        `${writer.rotations.whileDown} of them while the daemon was down, ${writer.rotations.frozen} with the daemon frozen around a burst of ${BURST} lines before and after; ` +
        `restarts: 1 (SIGTERM at ${STOP_AT / 1000} s, down ~${DOWN_MS / 1000} s); ${files} files in the log directory`,
    );
    t.diagnostic(
      `daemon saw: tail_rotated ${n('tail_rotated')}, tail_truncated ${n('tail_truncated')}, tail_resume_rotated ${n('tail_resume_rotated')}, ` +
        `lost-warnings ${n('tail_resume_lost') + n('tail_truncated_no_copy')}, tail_error ${n('tail_error')}`,
    );
    t.diagnostic(`result: ${grants.length} grants; missing ${missing.length}; count != 1: ${doubled.length}; unexpected: ${extra.length}`);

    assert.ok(written.lines >= 2_000 * (RUN_MS / 1000) * 0.95, `writer rate: ${written.lines} lines`);
    assert.ok(writer.rotations.rename >= 3 && writer.rotations.copytruncate >= 3 && writer.rotations.whileDown === 2);
    // A harness self-check: most rotations must have left unread lines behind (daemon frozen around them);
    // on a loaded machine one may fall into the restart window, when there is no daemon to freeze.
    assert.ok(writer.rotations.frozen >= SCHEDULE.length - 1, `only ${writer.rotations.frozen} of ${SCHEDULE.length} rotations had the daemon frozen`);
    assert.deepEqual(missing.slice(0, 20), [], `${missing.length} login(s) lost`);
    assert.deepEqual(doubled.slice(0, 20), [], `${doubled.length} login(s) recorded more than once`);
    assert.deepEqual(extra.slice(0, 20), [], 'grants nobody logged in for');
    assert.equal(grants.length, written.logins);
    assert.equal(n('tail_error'), 0, 'no read errors');
    assert.equal(n('tail_resume_lost') + n('tail_truncated_no_copy'), 0, 'no lost-position warnings');
    assert.equal(n('tail_resume_rotated'), 1, 'the restart drained the rotated files first');
  } finally {
    for (const d of daemons) if (d.child.exitCode === null && d.child.signalCode === null) d.child.kill('SIGKILL');
    await Promise.all(daemons.map((d) => Promise.race([d.exited, sleep(5_000, undefined, { ref: false })])));
    await rm(dir, { recursive: true, force: true });
  }
});
