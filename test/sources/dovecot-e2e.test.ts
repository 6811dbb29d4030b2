// End to end with a real Dovecot: private Dovecot instances on loopback ports (test/helpers/dovecot.ts, log_path
// files), the REAL relaygate daemon as a child process (`relaygate run -c FILE`) following their log files, logins
// made with curl (and raw sockets for hostile usernames) from distinct 127.x.y.z / ::1 source addresses, and the
// results read back through the real CLI (`relaygate map query --json`, `relaygate check`).
//
// Covers: POP3 and IMAP logins from 127.0.0.7 and ::1 become grants (user, service, source); a wrong password
// makes none; hostile usernames (auth_username_chars empty, usernames holding `rip=6.6.6.6` or a whole fake
// `Login:` line) grant only the true client, never 6.6.6.6; `relaygate check` permits a granted client (exit 0)
// and rejects the failed one (exit 1, 554 5.7.1 Relay access denied); track_logout = true in a second daemon
// (grace 20s) keeps an open IMAP session's grant refreshed and makes grace count from LOGOUT; both daemons stop
// on SIGTERM with exit 0.
//
// Needs root and Debian 12's dovecot-core, dovecot-pop3d, dovecot-imapd and curl (CI installs them in .ci/run).
// Missing ones make the test FAIL, never skip. Network: loopback only, IP literals only; every wait is bounded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { constants as fsc } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDovecot, type PrivateDovecot } from '../helpers/dovecot.ts';
import { imapLogin, pop3Login } from '../helpers/clients.ts';
import { pollFor, run, waitExit, type RunResult } from '../helpers/proc.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'src/main.ts');
// The CLI runs from a temporary directory, so tsx is named by its resolved URL, not looked up from cwd.
const TSX = import.meta.resolve('tsx');

const PW = { alice: 'alice-pw', bob: 'bob pw "quoted"', hostile: 'hostile-pw', any: 'static-any-pw' };
const HOSTILE = {
  /** the issue's example: a successful login line then reads `user=<x>, method=PLAIN, rip=6.6.6.6>, method=PLAIN, rip=127.0.2.1, ...` */
  gt: 'x>, method=PLAIN, rip=6.6.6.6',
  comma: 'x, rip=6.6.6.6, lip=1.1.1.1',
  fakeTail: 'alice>, method=PLAIN, rip=6.6.6.6, lip=127.0.0.1, mpid=1, session=<abc>',
};
const INSTALL_HINT = 'run .ci/run, or as root: apt-get install -y dovecot-core dovecot-pop3d dovecot-imapd curl';

let dir = '';
let dcA: PrivateDovecot | undefined; // Dovecot defaults (alice, bob)
let dcB: PrivateDovecot | undefined; // auth_username_chars empty, %u, hostile users, static passdb
let cfg1 = ''; // daemon 1: both logs, default grace, track_logout off
let cfg2 = ''; // daemon 2: Dovecot A's log, grace 20s, track_logout on
const daemons: Daemon[] = [];

// ---------------------------------------------------------------------------------------------------------------
// helpers

/** Fails (never skips) with an install hint when something the test needs is missing. */
async function requirePrerequisites(): Promise<void> {
  const problems: string[] = [];
  if (process.getuid?.() !== 0) problems.push('must run as root (Dovecot drops privileges per service)');
  for (const [cmd, args] of [['dovecot', ['--version']], ['doveadm', ['-O', 'help']], ['curl', ['--version']]] as const) {
    const r = await run(cmd, [...args], { timeoutMs: 10_000 }).catch((e: Error) => e);
    if (r instanceof Error) problems.push(`\`${cmd}\` not found (${r.message})`);
  }
  for (const bin of ['pop3-login', 'pop3', 'imap-login', 'imap']) {
    const p = `/usr/lib/dovecot/${bin}`;
    if (!(await access(p, fsc.X_OK).then(() => true, () => false))) problems.push(`${p} missing (dovecot-pop3d / dovecot-imapd not installed)`);
  }
  if (problems.length > 0) {
    throw new Error(`Dovecot end-to-end test cannot run: ${problems.join('; ')}. To fix: ${INSTALL_HINT}. (CI installs these packages; a missing one there is a failure.)`);
  }
}

function relaygate(args: string[], timeoutMs = 30_000): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--import', TSX, MAIN, ...args], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr });
    });
  });
}

/** The real daemon, `relaygate run -c FILE`, with its stdout (pino JSON lines) and stderr collected. */
class Daemon {
  out = '';
  private constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    child.stdout?.on('data', (d: Buffer) => (this.out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.out += d.toString()));
  }

  static async start(name: string, config: string, timeoutMs = 30_000): Promise<Daemon> {
    const child = spawn(process.execPath, ['--import', TSX, MAIN, 'run', '-c', config], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    const d = new Daemon(name, child);
    daemons.push(d);
    // Up when it logged its "components" line (sources running); dead or silent = failure with its output.
    const up = await pollFor(() => (d.exited() ? false : d.events().some((e) => e.event === 'components') ? true : undefined), timeoutMs, 50);
    if (up !== true) {
      throw new Error(`relaygate daemon ${name} did not start (${d.exited() ? `exited ${child.exitCode ?? child.signalCode}` : `no "components" log line within ${timeoutMs} ms`}):\n${d.out.slice(-4000)}`);
    }
    return d;
  }

  exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  events(): Array<Record<string, unknown>> {
    const ev: Array<Record<string, unknown>> = [];
    for (const l of this.out.split('\n')) {
      if (!l.startsWith('{')) continue;
      try {
        ev.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        /* a partial line */
      }
    }
    return ev;
  }

  /** SIGTERM, wait (bounded) for the exit; returns the exit code (null = had to be killed). */
  async stop(timeoutMs = 15_000): Promise<number | null> {
    if (!this.exited()) {
      this.child.kill('SIGTERM');
      if (!(await waitExit(this.child, timeoutMs))) {
        this.child.kill('SIGKILL');
        await waitExit(this.child, 5_000);
        return null;
      }
    }
    return this.child.exitCode;
  }

  tail(n = 3000): string {
    return this.out.slice(-n);
  }
}

interface GrantJson {
  ip: string;
  user: string | null;
  service: string | null;
  source: string;
  firstSeen: string;
  lastSeen: string;
  expires: string;
  count: number;
}

/** `relaygate map query IP --json`: the grant, or null (exit 1, `null`). */
async function query(config: string, ip: string): Promise<GrantJson | null> {
  const r = await relaygate(['map', 'query', ip, '--json', '-c', config]);
  if (r.code !== 0 && r.code !== 1) throw new Error(`map query ${ip} exited ${r.code ?? r.signal}: ${r.stderr}`);
  const g = JSON.parse(r.stdout) as GrantJson | null;
  assert.equal(r.code, g === null ? 1 : 0, `map query ${ip}: exit status and answer disagree: ${r.stdout}`);
  return g;
}

async function list(config: string): Promise<GrantJson[]> {
  const r = await relaygate(['map', 'list', '--json', '-c', config]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as GrantJson[];
}

/** Polls `map query` until `pred` holds (bounded); fails with the last answer and the daemon's output. */
async function waitGrant(config: string, ip: string, pred: (g: GrantJson) => boolean, what: string, timeoutMs = 5_000): Promise<GrantJson> {
  let last: GrantJson | null = null;
  const g = await pollFor(async () => {
    last = await query(config, ip);
    return last !== null && pred(last) ? last : undefined;
  }, timeoutMs, 100);
  if (g === undefined) {
    const d = daemons.map((x) => `--- daemon ${x.name}:\n${x.tail(1500)}`).join('\n');
    assert.fail(`${ip}: ${what} not seen within ${timeoutMs} ms; last answer ${JSON.stringify(last)}\n${d}`);
  }
  return g;
}

/** Waits (bounded) until Dovecot's log_path file has a line matching `re`; returns that line. */
async function waitLogLine(dc: PrivateDovecot, re: RegExp, what: string, timeoutMs = 10_000): Promise<string> {
  let text = '';
  const line = await pollFor(async () => {
    text = await dc.readLog();
    return text.split('\n').find((l) => re.test(l));
  }, timeoutMs, 50);
  if (line === undefined) assert.fail(`Dovecot never logged ${what} (${re}) within ${timeoutMs} ms; log tail:\n${text.slice(-3000)}`);
  return line;
}

function curl(args: string[]): Promise<RunResult> {
  // --max-time bounds curl itself; run() kills it after 20 s as well.
  return run('curl', ['-s', '-S', '--max-time', '15', ...args], { timeoutMs: 20_000 });
}

const MON = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const p2 = (n: number): string => String(n).padStart(2, '0');
/** Dovecot's log_path stamp for a time (local time, `%b %d %H:%M:%S`). */
function dovecotStamp(d: Date): string {
  return `${MON[d.getMonth()]} ${p2(d.getDate())} ${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}`;
}
/** The time of a log_path line (second resolution, local time; the current year). */
function stampTime(line: string): number {
  const m = /^([A-Z][a-z]{2}) ([ \d]\d) (\d\d):(\d\d):(\d\d) /.exec(line);
  assert.ok(m, `no log_path stamp in ${JSON.stringify(line)}`);
  const now = new Date();
  return new Date(now.getFullYear(), MON.indexOf(m[1]!), Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5])).getTime();
}

/** An IMAP session kept open after LOGIN (raw socket from a chosen source address), logged out on demand. */
class HeldImap {
  private buf = '';
  private waiters: Array<() => void> = [];
  private closed = false;
  private constructor(private readonly sock: net.Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      for (const w of this.waiters.splice(0)) w();
    });
    const end = (): void => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w();
    };
    sock.on('close', end);
    sock.on('error', end);
  }

  static async login(o: { port: number; localAddress: string; user: string; pass: string }): Promise<HeldImap> {
    const sock = net.connect({ host: '127.0.0.1', port: o.port, localAddress: o.localAddress });
    const s = new HeldImap(sock);
    try {
      await s.until(/^\* OK .*Dovecot/m, 10_000);
      sock.write(`a1 LOGIN "${o.user}" "${o.pass}"\r\n`);
      await s.until(/^a1 OK /m, 10_000);
      return s;
    } catch (e) {
      sock.destroy();
      throw e;
    }
  }

  /** Resolves when the text received so far matches `re` (bounded). */
  async until(re: RegExp, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!re.test(this.buf)) {
      if (this.closed) throw new Error(`IMAP connection closed before ${re}; got ${JSON.stringify(this.buf)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`IMAP: no ${re} within ${timeoutMs} ms; got ${JSON.stringify(this.buf)}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** A command that keeps the session busy (NOOP), as a mail client would. */
  async noop(tag: string): Promise<void> {
    this.sock.write(`${tag} NOOP\r\n`);
    await this.until(new RegExp(`^${tag} OK `, 'm'), 10_000);
  }

  async logout(): Promise<void> {
    this.sock.write('a9 LOGOUT\r\n');
    await this.until(/^a9 OK /m, 10_000);
    this.destroy();
  }

  destroy(): void {
    this.sock.destroy();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// setup / teardown

before(async () => {
  await requirePrerequisites();
  dir = await mkdtemp(join(tmpdir(), 'rg-dovecot-e2e-'));
  // allSettled: when one instance fails, the other is still kept (and stopped by after()) before the failure shows.
  const started = await Promise.allSettled([
    startDovecot({
      users: [
        { user: 'alice', pass: PW.alice },
        { user: 'bob', pass: PW.bob },
      ],
    }).then((dc) => (dcA = dc)),
    startDovecot({
      // auth_username_chars empty (any character), %u (case kept): hostile usernames log in SUCCESSFULLY and
      // Dovecot writes them unescaped between `user=<` and `>`. The static passdb logs in any name (LF, ...).
      users: [{ user: 'alice', pass: PW.alice }, ...Object.values(HOSTILE).map((user) => ({ user, pass: PW.hostile }))],
      usernameChars: '',
      usernameFormat: '%u',
      anyUserPassword: PW.any,
    }).then((dc) => (dcB = dc)),
  ]);
  for (const r of started) if (r.status === 'rejected') throw r.reason;
  if (!dcA || !dcB) throw new Error('unreachable: both Dovecot instances are up here');
  const watch = (path: string, trackLogout: boolean): string =>
    ['[[watch]]', `path = ${JSON.stringify(path)}`, 'format = "dovecot"', 'prefix = "logpath"', `track_logout = ${trackLogout}`, ''].join('\n');
  // mynetworks: NOT the default ["127.0.0.0/8", "[::1]/128"]. Every client of this test is a loopback address;
  // with the default they would be trusted networks: never recorded as grants (mynetworks logins are refused by
  // the store), and permitted by permit_mynetworks anyway, so the test would prove nothing. With a documentation
  // block instead, 127.x.y.z and ::1 are roaming clients like any other.
  const common = ['mynetworks = ["192.0.2.0/24"]', 'log_level = "info"', ''].join('\n');
  cfg1 = join(dir, 'relaygate.toml');
  await writeFile(cfg1, [`data_dir = ${JSON.stringify(join(dir, 'data1'))}`, common, watch(dcA.logPath, false), watch(dcB.logPath, false)].join('\n'));
  cfg2 = join(dir, 'relaygate-logout.toml');
  await writeFile(cfg2, [`data_dir = ${JSON.stringify(join(dir, 'data2'))}`, 'grace = "20s"', common, watch(dcA.logPath, true)].join('\n'));
  for (const r of await Promise.allSettled([Daemon.start('1', cfg1), Daemon.start('2 (track_logout)', cfg2)])) if (r.status === 'rejected') throw r.reason;
});

after(async () => {
  // Runs on failure too: whatever is still up goes down (bounded), then the temp dirs go.
  await Promise.all(daemons.map((d) => d.stop().catch(() => null)));
  await Promise.all([dcA?.stop().catch(() => undefined), dcB?.stop().catch(() => undefined)]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------------------------
// tests

test('POP3 and IMAP logins with curl from 127.0.0.7 and ::1 become grants (user, service, source)', async () => {
  const dc = dcA!;
  const source = `dovecot:${dc.logPath}`;

  let r = await curl([`pop3://127.0.0.1:${dc.pop3Port}/`, '-u', `alice:${PW.alice}`, '--interface', '127.0.0.7']);
  assert.equal(r.code, 0, `curl POP3 alice: ${r.stderr}`);
  const pop = await waitGrant(cfg1, '127.0.0.7', (g) => g.service === 'pop3', 'a POP3 grant');
  assert.equal(pop.user, 'alice');
  assert.equal(pop.source, source);
  const popTtl = Date.parse(pop.expires) - Date.parse(pop.lastSeen);
  assert.ok(popTtl >= 1799_000 && popTtl <= 1800_000, `default grace 30m, got ${popTtl} ms`);

  r = await curl([`imap://127.0.0.1:${dc.imapPort}/`, '-u', `alice:${PW.alice}`, '--interface', '127.0.0.7']);
  assert.equal(r.code, 0, `curl IMAP alice: ${r.stderr}`);
  const imap = await waitGrant(cfg1, '127.0.0.7', (g) => g.service === 'imap' && g.count >= 2, 'the IMAP login refreshing the grant');
  assert.equal(imap.user, 'alice');
  assert.equal(imap.count, 2);

  // IPv6: curl needs -g so that the [::1] of the URL is not taken for a glob range.
  r = await curl(['-g', `pop3://[::1]:${dc.pop3Port}/`, '-u', `bob:${PW.bob}`, '--interface', '::1']);
  assert.equal(r.code, 0, `curl POP3 bob over ::1: ${r.stderr}`);
  const pop6 = await waitGrant(cfg1, '::1', (g) => g.service === 'pop3', 'a POP3 grant');
  assert.equal(pop6.user, 'bob');
  assert.equal(pop6.ip, '::1');
  r = await curl(['-g', `imap://[::1]:${dc.imapPort}/`, '-u', `bob:${PW.bob}`, '--interface', '::1']);
  assert.equal(r.code, 0, `curl IMAP bob over ::1: ${r.stderr}`);
  const imap6 = await waitGrant(cfg1, '::1', (g) => g.service === 'imap' && g.count >= 2, 'the IMAP login refreshing the grant');
  assert.equal(imap6.user, 'bob');
  // The readiness probes Dovecot's helper made from 127.0.0.1 (no auth attempt) granted nothing.
  assert.equal(await query(cfg1, '127.0.0.1'), null);
});

test('a failed login (wrong password) from 127.0.0.8 makes no grant', async () => {
  const dc = dcA!;
  const r = await curl([`pop3://127.0.0.1:${dc.pop3Port}/`, '-u', `alice:wrong-${PW.alice}`, '--interface', '127.0.0.8']);
  assert.equal(r.code, 67, `curl should report "login denied" (67): ${r.code} ${r.stderr}`);
  await waitLogLine(dc, /pop3-login: Info: .*auth failed.*rip=127\.0\.0\.8, /, 'the failed login');
  // A later successful login from another address is granted: the daemon has read past the failure line.
  const ok = await curl([`imap://127.0.0.1:${dc.imapPort}/`, '-u', `alice:${PW.alice}`, '--interface', '127.0.0.9']);
  assert.equal(ok.code, 0, ok.stderr);
  await waitGrant(cfg1, '127.0.0.9', (g) => g.user === 'alice', 'the later login');
  assert.equal(await query(cfg1, '127.0.0.8'), null, '127.0.0.8 only failed to log in');
});

test('hostile usernames (auth_username_chars empty) grant only the true client, never 6.6.6.6', async () => {
  const dc = dcB!;
  const common = { host: '127.0.0.1', expectGreeting: /Dovecot/, timeoutMs: 15_000 };
  // Successful logins whose usernames carry a fake `rip=`: `Login: user=<x>, method=PLAIN, rip=6.6.6.6>, method=PLAIN, rip=127.0.2.1, ...`
  const okGt = await pop3Login({ ...common, port: dc.pop3Port, user: HOSTILE.gt, pass: PW.hostile, localAddress: '127.0.2.1' });
  assert.ok(okGt.ok, `Dovecot refused ${JSON.stringify(HOSTILE.gt)}: ${okGt.reply}`);
  const okComma = await imapLogin({ ...common, port: dc.imapPort, user: HOSTILE.comma, pass: PW.hostile, localAddress: '127.0.2.2' });
  assert.ok(okComma.ok, okComma.reply);
  const okTail = await imapLogin({ ...common, port: dc.imapPort, user: HOSTILE.fakeTail, pass: PW.hostile, localAddress: '127.0.2.3' });
  assert.ok(okTail.ok, okTail.reply);
  // A fake, CURRENT log_path line after a LF (static passdb): the mail process writes the raw name into its log
  // prefix, so the fake line's text starts a line of its own in the file (`... pop3: Error: <fake line>)<pid>...`).
  const fake = `${dovecotStamp(new Date())} pop3-login: Info: Login: user=<alice>, method=PLAIN, rip=6.6.6.6, lip=127.0.0.1, mpid=1, session=<abc>`;
  const okLf = await pop3Login({ ...common, port: dc.pop3Port, method: 'auth-plain', user: `x\n${fake}`, pass: PW.any, localAddress: '127.0.2.4' });
  assert.ok(okLf.ok, okLf.reply);

  // Failed logins whose usernames embed a whole fake success line (one inline, one after a LF): nothing at all.
  // From distinct addresses, in parallel (Dovecot's auth penalty delays each failure by ~2 s per address).
  const failures = await Promise.all([
    pop3Login({ ...common, port: dc.pop3Port, user: `x> Login: user=<alice>, method=PLAIN, rip=6.6.6.6, lip=127.0.0.1, mpid=1, session=<abc>`, pass: 'wrong', localAddress: '127.0.3.1' }),
    pop3Login({ ...common, port: dc.pop3Port, method: 'auth-plain', user: `x\n${fake}`, pass: 'wrong', localAddress: '127.0.3.2' }),
    imapLogin({ ...common, port: dc.imapPort, user: HOSTILE.gt, pass: 'wrong', localAddress: '127.0.3.3' }),
  ]);
  for (const f of failures) assert.equal(f.ok, false, `expected a refusal: ${f.reply}`);
  for (const ip of ['127.0.3.1', '127.0.3.2', '127.0.3.3']) {
    await waitLogLine(dc, new RegExp(`auth failed.*rip=${ip.replace(/\./g, '\\.')}, `), `the failed login from ${ip}`);
  }
  // Sentinel: a plain successful login after all of the above; once it is granted the daemon has read past them.
  const sentinel = await pop3Login({ ...common, port: dc.pop3Port, user: 'alice', pass: PW.alice, localAddress: '127.0.2.9' });
  assert.ok(sentinel.ok, sentinel.reply);
  await waitGrant(cfg1, '127.0.2.9', (g) => g.user === 'alice', 'the sentinel login');

  const log = await dc.readLog();
  assert.match(log, /Login: user=<x>, method=PLAIN, rip=6\.6\.6\.6>, method=PLAIN, rip=127\.0\.2\.1, /, 'the injection is in the log as expected');
  assert.match(log, /pop3: Error: \w{3} [ \d]\d \d\d:\d\d:\d\d pop3-login: Info: Login: user=<alice>, method=PLAIN, rip=6\.6\.6\.6, /, 'the LF injection split the line');

  const gGt = await waitGrant(cfg1, '127.0.2.1', () => true, 'the grant of the `x>, ...rip=6.6.6.6` login');
  assert.equal(gGt.user, HOSTILE.gt, 'the whole hostile name is the user');
  assert.equal(gGt.service, 'pop3');
  assert.equal((await waitGrant(cfg1, '127.0.2.2', () => true, 'the grant of the `x, rip=...` login')).user, HOSTILE.comma);
  assert.equal((await waitGrant(cfg1, '127.0.2.3', () => true, 'the grant of the fake-tail login')).user, HOSTILE.fakeTail);
  await waitGrant(cfg1, '127.0.2.4', () => true, 'the grant of the LF login');

  for (const ip of ['6.6.6.6', '1.1.1.1', '127.0.3.1', '127.0.3.2', '127.0.3.3']) {
    assert.equal(await query(cfg1, ip), null, `${ip} must have no grant`);
  }
  // And nothing else slipped in: every grant is one of the addresses that really logged in.
  const real = new Set(['127.0.0.7', '::1', '127.0.0.9', '127.0.2.1', '127.0.2.2', '127.0.2.3', '127.0.2.4', '127.0.2.9']);
  const all = await list(cfg1);
  assert.deepEqual(all.map((g) => g.ip).filter((ip) => !real.has(ip)), [], JSON.stringify(all, null, 1));
  assert.equal(await query(cfg2, '6.6.6.6'), null);
});

test('relaygate check: the granted client relays (exit 0), the failed one is refused (exit 1, 554)', async () => {
  const ok = await relaygate(['check', '--client', '127.0.0.7', '--rcpt', 'x@remote.example', '-c', cfg1]);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /RCPT: PERMIT by permit_pop_before_smtp/);
  assert.match(ok.stdout, /permit_mynetworks\s+DUNNO/, 'loopback is not in mynetworks here');
  assert.match(ok.stdout, /permit_pop_before_smtp\s+OK\b.*user=alice/);
  const ok6 = await relaygate(['check', '--client', '::1', '--rcpt', 'x@remote.example', '-c', cfg1]);
  assert.equal(ok6.code, 0, ok6.stdout + ok6.stderr);

  for (const ip of ['127.0.0.8', '6.6.6.6', '127.0.3.1']) {
    const no = await relaygate(['check', '--client', ip, '--rcpt', 'x@remote.example', '-c', cfg1]);
    assert.equal(no.code, 1, `${ip}: ${no.stdout}${no.stderr}`);
    assert.match(no.stdout, /REJECT by reject_unauth_destination — 554 5\.7\.1 <x@remote\.example>: Relay access denied/);
    assert.match(no.stdout, /permit_pop_before_smtp\s+DUNNO/);
  }
});

test('track_logout = true: an open IMAP session keeps its grant fresh; after LOGOUT grace counts from the logout', async () => {
  const dc = dcA!;
  const GRACE = 20_000;
  const ip = '127.0.4.1';
  const s = await HeldImap.login({ port: dc.imapPort, localAddress: ip, user: 'alice', pass: PW.alice });
  let session = '';
  try {
    const loginLine = await waitLogLine(dc, /imap-login: Info: Login: user=<alice>, .*rip=127\.0\.4\.1, /, 'the held login');
    session = /session=<([^>]+)>$/.exec(loginLine)?.[1] ?? '';
    assert.ok(session, loginLine);
    const loginAt = stampTime(loginLine);
    const first = await waitGrant(cfg2, ip, () => true, 'the held session grant');
    assert.equal(first.user, 'alice');
    assert.equal(first.service, 'imap');
    // At login: the login line's time + grace (a refresh may already have happened in the second or so since).
    const firstExp = Date.parse(first.expires);
    // On a loaded machine the first look may come after one refresh (every grace/3 ≈ 6.7 s).
    assert.ok(firstExp >= loginAt + GRACE && firstExp <= loginAt + GRACE + 7_500, `expires ${first.expires}, login at ${new Date(loginAt).toISOString()} + 20 s`);
    // Daemon 1 (track_logout off) records the same login with plain grace.
    await waitGrant(cfg1, ip, () => true, 'the plain grant');

    // The daemon refreshes open sessions every grace/3 (~6.7 s) with no new log line: the expiry moves on.
    await s.noop('n1');
    const refreshed = await waitGrant(cfg2, ip, (g) => Date.parse(g.expires) > Date.parse(first.expires), 'a refresh of the open session', 12_000);
    assert.ok(Date.parse(refreshed.expires) > Date.parse(first.expires));
    await s.noop('n2');
  } finally {
    await s.logout().catch(() => s.destroy());
  }
  const esc = session.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  const logoutLine = await waitLogLine(dc, new RegExp(`imap\\(alice\\)<\\d+><${esc}>: Info: Disconnected: Logged out `), 'the LOGOUT of the held session');
  const logoutAt = stampTime(logoutLine);
  // grace now counts from the logout line's time (a refresh in the same second can add at most 1 s, JSON has seconds).
  const done = await waitGrant(cfg2, ip, (g) => Date.parse(g.expires) >= logoutAt + GRACE, 'the logout refresh');
  const exp = Date.parse(done.expires);
  assert.ok(exp <= logoutAt + GRACE + 1_000, `expires ${done.expires}, logout at ${new Date(logoutAt).toISOString()} + 20 s`);
  // No more refreshes once the session is closed: the expiry stays put over more than one refresh interval.
  await sleep(7_500);
  const later = await query(cfg2, ip);
  assert.ok(later, 'still granted (grace has not run out)');
  assert.equal(later.expires, done.expires, 'a closed session is not refreshed any more');
});

test('both daemons stop on SIGTERM with exit status 0', async () => {
  for (const d of daemons) {
    const code = await d.stop();
    assert.equal(code, 0, `daemon ${d.name}: exit ${code}\n${d.tail()}`);
    assert.ok(d.events().some((e) => e.event === 'stopped'), `daemon ${d.name} logged no "stopped":\n${d.tail()}`);
  }
});
