// A private Postfix (3.7, Debian's `postfix` + `postfix-lmdb`) for tests.
//
// Install: echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
//          DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postfix postfix-lmdb swaks
// A missing Postfix is a test FAILURE naming the packages, never a skip: CI installs them (.ci/run).
//
// - everything lives in a fresh temp dir: config_directory (DIR/etc: main.cf + master.cf), queue_directory
//   (DIR/queue), data_directory (DIR/data), the log (DIR/maillog, through the postlog service: maillog_file)
// - smtpd listens on 127.0.0.1:PORT only (a master.cf `127.0.0.1:PORT inet` line; PORT found free, and when
//   Postfix still loses the race it is restarted on a new port, a bounded number of times)
// - every daemon runs with chroot = n (the temp dir is not a chroot jail)
// - all mail goes to relayhost = [127.0.0.1]:relayPort (e.g. test/helpers/smtp-sink.ts); mydestination and
//   relay_domains are empty, so x@remote.example is a relay attempt that reject_unauth_destination refuses with
//   `554 5.7.1 <x@remote.example>: Relay access denied`
// - no DNS: smtp_dns_support_level = disabled, smtpd_peername_lookup = no (clients are `unknown[ip]`), fixed
//   myhostname; IP literals only
// - mynetworks = 127.0.0.1/32 by default (so 127.0.0.21, .22, ... are strangers); smtpd_relay_restrictions =
//   permit_mynetworks, reject_unauth_destination by default; smtpd_error_sleep_time = 0 (no 1 s pause per error)
// - `main` lines from the caller replace the default of the same name, or are appended
// - started with `postfix -c DIR/etc start`, ready when smtpd's 220 greeting (with a per-instance token in the
//   banner, so another server that grabbed the port is not taken for it) has been read;
//   stopped with `postfix -c DIR/etc stop` (then SIGKILL of the master pid as fallback); instances still running
//   when the test process exits are stopped by an exit hook, so a failing test leaves no Postfix behind
//
// Needs root (master runs as root, daemons as mail_owner = postfix).
//
//   const sink = await startSink();
//   const pf = await startPostfix({
//     relayPort: sink.port,
//     main: ['smtpd_relay_restrictions = permit_mynetworks, check_policy_service inet:127.0.0.1:10031, reject_unauth_destination'],
//   });
//   try {
//     await swaks({ port: pf.port, localAddress: '127.0.0.21', to: 'x@remote.example' });
//     await pf.waitForLog(/status=sent/, 5_000);
//   } finally {
//     await pf.stop();          // also: test `after()` hooks; stop() is idempotent
//   }
//
// API (kept stable: the table-export tests use it too):
//   requirePostfix(): Promise<string>          the mail_version, or throws naming the Debian packages
//   startPostfix(opts): Promise<PrivatePostfix>
//   PrivatePostfix: port, host, dir, configDir, queueDir, dataDir, logFile, version, env (MAIL_CONFIG=configDir),
//     readLog(), waitForLog(re, timeoutMs), postconf(args), postfix(args), reload(), stop({ keep })
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { alive, freePort, pollFor, run, runOk, type RunResult } from './proc.ts';
import { SmtpClient } from './smtp-client.ts';

export interface PostfixOpts {
  /** port of the relayhost on 127.0.0.1 (e.g. a smtp-sink); every message goes there */
  relayPort: number;
  /** relayhost address (default 127.0.0.1) */
  relayHost?: string;
  /** extra main.cf lines (`name = value`): each replaces the default line of that name, or is appended */
  main?: string[];
  /** extra master.cf lines (services), appended as given */
  master?: string[];
  /** `-o name=value` overrides on the smtpd listener line */
  smtpdOverrides?: string[];
  /** mynetworks (default `127.0.0.1/32`) */
  mynetworks?: string;
  /** parent directory of the temp dir (default os.tmpdir()) */
  parentDir?: string;
  /** start attempts when the port is taken in between (default 4) */
  attempts?: number;
  startTimeoutMs?: number;
}

export interface PrivatePostfix {
  /** smtpd port on `host` */
  readonly port: number;
  /** always 127.0.0.1 */
  readonly host: string;
  readonly dir: string;
  /** config_directory (main.cf, master.cf); pass as `-c` to postconf/postmap/postfix */
  readonly configDir: string;
  readonly queueDir: string;
  readonly dataDir: string;
  /** maillog_file */
  readonly logFile: string;
  /** mail_version, e.g. 3.7.11 */
  readonly version: string;
  /** process.env plus MAIL_CONFIG=configDir, for Postfix tools run by the caller */
  readonly env: NodeJS.ProcessEnv;
  /** current maillog_file text ('' before the first line; lags postlogd by a few ms) */
  readLog(): Promise<string>;
  /** resolves with the log text once `re` matches it; rejects after timeoutMs with the log tail in the message */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<string>;
  /** `postconf -c configDir ...args` */
  postconf(args: string[]): Promise<RunResult>;
  /** `postfix -c configDir ...args` */
  postfix(args: string[]): Promise<RunResult>;
  /** `postfix -c configDir reload` (re-reads main.cf/master.cf; append lines with appendMain first) */
  reload(): Promise<void>;
  /** append lines to main.cf (call reload() afterwards for running daemons to see them) */
  appendMain(lines: string[]): Promise<void>;
  /** stop Postfix, return the final log text, remove the temp dir unless keep; idempotent */
  stop(opts?: { keep?: boolean }): Promise<{ log: string }>;
}

const POSTFIX_PACKAGES = 'echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; ' +
  'DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postfix postfix-lmdb swaks';

let versionCheck: Promise<string> | undefined;

/** mail_version of the installed Postfix (>= 3.4 for maillog_file), or throws naming the packages to install. */
export function requirePostfix(): Promise<string> {
  versionCheck ??= (async () => {
    let r: RunResult;
    try {
      // -d: compiled-in defaults, so no /etc/postfix/main.cf is needed; -c points away from /etc/postfix, whose
      // main.cf may not exist ("No configuration" install)
      r = await run('postconf', ['-c', '/usr/share/postfix', '-d', '-h', 'mail_version'], { timeoutMs: 10_000 });
    } catch {
      throw new Error(`Postfix is not installed (no postconf): run \`${POSTFIX_PACKAGES}\` (CI installs it)`);
    }
    const v = r.stdout.trim();
    const m = /^(\d+)\.(\d+)/.exec(v);
    if (r.code !== 0 || !m) throw new Error(`postconf mail_version failed (${r.stderr.trim()}): run \`${POSTFIX_PACKAGES}\``);
    if (Number(m[1]) < 3 || (Number(m[1]) === 3 && Number(m[2]) < 4)) throw new Error(`Postfix ${v} is too old: the test harness needs >= 3.4 (maillog_file)`);
    return v;
  })();
  return versionCheck;
}

/** Is the lmdb: table type available (Debian `postfix-lmdb`)? Throws naming the package when not. */
export async function requirePostfixLmdb(): Promise<void> {
  const r = await run('postconf', ['-c', '/usr/share/postfix', '-m'], { timeoutMs: 10_000 });
  if (!r.stdout.split('\n').includes('lmdb')) throw new Error('Postfix has no lmdb: table type: run `apt-get install -y --no-install-recommends postfix-lmdb`');
}

// Services every test needs; all chroot = n. pickup/local/virtual/tlsmgr are left out (no local delivery,
// no TLS session cache).
const MASTER_SERVICES = [
  'cleanup    unix  n - n -    0 cleanup',
  'qmgr       unix  n - n 300  1 qmgr',
  'rewrite    unix  - - n -    - trivial-rewrite',
  'bounce     unix  - - n -    0 bounce',
  'defer      unix  - - n -    0 bounce',
  'trace      unix  - - n -    0 bounce',
  'verify     unix  - - n -    1 verify',
  'flush      unix  n - n 1000? 0 flush',
  'proxymap   unix  - - n -    - proxymap',
  'proxywrite unix  - - n -    1 proxymap',
  'smtp       unix  - - n -    - smtp',
  'relay      unix  - - n -    - smtp',
  'showq      unix  n - n -    - showq',
  'error      unix  - - n -    - error',
  'retry      unix  - - n -    - error',
  'discard    unix  - - n -    - discard',
  'anvil      unix  - - n -    1 anvil',
  'scache     unix  - - n -    1 scache',
  'postlog    unix-dgram n - n - 1 postlogd',
];

const running = new Set<string>(); // config dirs of started instances, for the exit hook
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    // synchronous on purpose: 'exit' handlers cannot wait for promises
    for (const configDir of running) {
      try {
        execFileSync('postfix', ['-c', configDir, 'stop'], { stdio: 'ignore', timeout: 10_000 });
      } catch {
        // already gone
      }
    }
  });
}

function mainCf(dir: string, o: PostfixOpts, token: string): string {
  const lines = [
    '# private test instance, generated by test/helpers/postfix.ts',
    'compatibility_level = 3.6',
    `queue_directory = ${join(dir, 'queue')}`,
    `data_directory = ${join(dir, 'data')}`,
    'mail_owner = postfix',
    'setgid_group = postdrop',
    'myhostname = postfix.relaygate.test',
    'mydomain = relaygate.test',
    'myorigin = $myhostname',
    'mydestination =',
    'relay_domains =',
    'inet_interfaces = 127.0.0.1',
    'inet_protocols = ipv4',
    `mynetworks = ${o.mynetworks ?? '127.0.0.1/32'}`,
    `relayhost = [${o.relayHost ?? '127.0.0.1'}]:${o.relayPort}`,
    'smtp_dns_support_level = disabled',
    'smtpd_peername_lookup = no',
    'alias_maps =',
    'alias_database =',
    'local_recipient_maps =',
    `maillog_file = ${join(dir, 'maillog')}`,
    `maillog_file_prefixes = ${dir}`,
    'smtpd_error_sleep_time = 0',
    `smtpd_banner = $myhostname ESMTP relaygate-test ${token}`,
    'smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination',
    'smtp_tls_security_level = none',
    'smtpd_tls_security_level = none',
    // one retry after 1 s would make a dead relayhost test slow; tests assert on what the log says instead
    'queue_run_delay = 1s',
    'minimal_backoff_time = 1s',
    'maximal_backoff_time = 2s',
  ];
  // A caller's `name = value` replaces the default line of that name (Postfix would take the last one too,
  // but warn "overriding earlier entry" in every process's log); other lines are appended.
  for (const l of o.main ?? []) {
    if (/[\r\n]/.test(l)) throw new Error(`main.cf line with a newline: ${JSON.stringify(l)}`);
    const name = /^\s*([A-Za-z0-9_]+)\s*=/.exec(l)?.[1];
    const at = name === undefined ? -1 : lines.findIndex((d) => d.startsWith(`${name} =`));
    if (at === -1) lines.push(l);
    else lines[at] = l;
  }
  return lines.join('\n') + '\n';
}

function masterCf(port: number, o: PostfixOpts): string {
  const overrides = (o.smtpdOverrides ?? []).map((x) => {
    if (/\s/.test(x)) throw new Error(`smtpd override with whitespace (master.cf cannot hold it): ${JSON.stringify(x)}`);
    return `  -o ${x}`;
  });
  return [`127.0.0.1:${port} inet n - n - - smtpd`, ...overrides, ...MASTER_SERVICES, ...(o.master ?? [])].join('\n') + '\n';
}

async function readText(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch {
    return '';
  }
}

async function masterPid(queueDir: string): Promise<number | undefined> {
  const t = (await readText(join(queueDir, 'pid', 'master.pid'))).trim();
  const n = Number(t);
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

async function greeting(port: number, want: RegExp, timeoutMs: number, queueDir: string): Promise<boolean> {
  const ok = await pollFor(async () => {
    // master gone (e.g. "fatal: bind ...: Address already in use"): stop waiting, the caller retries
    const pid = await masterPid(queueDir);
    if (pid !== undefined && !alive(pid)) return false;
    try {
      const c = await SmtpClient.connect({ host: '127.0.0.1', port, timeoutMs: 2_000, expectGreeting: want });
      await c.quit();
      return true;
    } catch {
      return undefined;
    }
  }, timeoutMs, 100);
  return ok === true;
}

export async function startPostfix(o: PostfixOpts): Promise<PrivatePostfix> {
  if (process.getuid?.() !== 0) throw new Error('startPostfix: needs root (Postfix master runs as root)');
  const version = await requirePostfix();
  const dir = await mkdtemp(join(o.parentDir ?? tmpdir(), 'rg-postfix-'));
  const configDir = join(dir, 'etc');
  const queueDir = join(dir, 'queue');
  const dataDir = join(dir, 'data');
  const logFile = join(dir, 'maillog');
  const env = { ...process.env, MAIL_CONFIG: configDir };
  const token = randomBytes(4).toString('hex');
  let stopped = false;
  let started = false;

  const postfix = (args: string[]): Promise<RunResult> => run('postfix', ['-c', configDir, ...args], { timeoutMs: 30_000, env });
  const stopNow = async (): Promise<void> => {
    if (!started) return;
    const pid = await masterPid(queueDir);
    await postfix(['stop']).catch(() => undefined);
    // `postfix stop` signals master and returns; master's children follow it. Wait, then force.
    if (pid !== undefined) {
      const gone = await pollFor(() => (alive(pid) ? undefined : true), 5_000, 50);
      if (gone === undefined && alive(pid)) process.kill(pid, 'SIGKILL');
    }
    running.delete(configDir);
    started = false;
  };

  try {
    await chmod(dir, 0o755); // daemons (user postfix) traverse it to reach queue_directory and data_directory
    await mkdir(configDir);
    await mkdir(queueDir);
    await mkdir(dataDir);
    await chown(dataDir, uidOf('postfix'), -1);
    installExitHook();
    const attempts = o.attempts ?? 4;
    let lastErr = '';
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const port = await freePort(['127.0.0.1']);
      await writeFile(join(configDir, 'main.cf'), mainCf(dir, o, token));
      await writeFile(join(configDir, 'master.cf'), masterCf(port, o));
      const r = await postfix(['start']);
      if (r.code !== 0) {
        lastErr = `postfix start exited ${r.code}: ${(r.stderr + r.stdout).trim()}\n${(await readText(logFile)).slice(-2000)}`;
        throw new Error(lastErr);
      }
      started = true;
      running.add(configDir);
      // Our own banner (unless the caller set one): a server that took the port in between is not mistaken for ours.
      const want = (o.main ?? []).some((l) => /^\s*smtpd_banner\s*=/.test(l)) ? /^220 / : new RegExp(`^220 .*relaygate-test ${token}`);
      if (await greeting(port, want, o.startTimeoutMs ?? 15_000, queueDir)) {
        return instance(port);
      }
      lastErr = `no 220 greeting on 127.0.0.1:${port} (attempt ${attempt}); log tail:\n${(await readText(logFile)).slice(-2000)}`;
      await stopNow();
      await sleep(100);
    }
    throw new Error(`startPostfix: ${lastErr}`);
  } catch (e) {
    await stopNow().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
    throw e;
  }

  function instance(port: number): PrivatePostfix {
    return {
      port,
      host: '127.0.0.1',
      dir,
      configDir,
      queueDir,
      dataDir,
      logFile,
      version,
      env,
      readLog: () => readText(logFile),
      async waitForLog(re, timeoutMs = 5_000) {
        const hit = await pollFor(async () => {
          const t = await readText(logFile);
          return re.test(t) ? t : undefined;
        }, timeoutMs, 50);
        if (hit === undefined) {
          throw new Error(`postfix log: no match for ${re} after ${timeoutMs} ms; tail:\n${(await readText(logFile)).slice(-3000)}`);
        }
        return hit;
      },
      postconf: (args) => run('postconf', ['-c', configDir, ...args], { timeoutMs: 10_000, env }),
      postfix,
      async reload() {
        await runOk('postfix', ['-c', configDir, 'reload'], { timeoutMs: 30_000 });
      },
      async appendMain(lines) {
        for (const l of lines) if (/[\r\n]/.test(l)) throw new Error(`main.cf line with a newline: ${JSON.stringify(l)}`);
        const cur = await readFile(join(configDir, 'main.cf'), 'utf8');
        await writeFile(join(configDir, 'main.cf'), cur + lines.join('\n') + '\n');
      },
      async stop(so = {}) {
        if (stopped) return { log: '' };
        stopped = true;
        await stopNow();
        await sleep(50); // postlogd writes the last lines asynchronously
        const log = await readText(logFile);
        if (!so.keep) await rm(dir, { recursive: true, force: true });
        return { log };
      },
    };
  }
}

function uidOf(user: string): number {
  const out = execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim();
  const n = Number(out);
  if (!Number.isInteger(n)) throw new Error(`no user ${user}: is Postfix installed? (${POSTFIX_PACKAGES})`);
  return n;
}
