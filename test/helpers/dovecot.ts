// A private Dovecot (2.3, Debian's dovecot-core + dovecot-pop3d + dovecot-imapd) for tests.
//
// - everything lives in a fresh temp dir: base_dir, state_dir, config, passwd-file, mail home, log file
// - its own instance_name (= syslog ident when logging to syslog)
// - POP3 and IMAP on free loopback ports (found by binding port 0 on 127.0.0.1 and ::1; if Dovecot still loses the
//   race and cannot bind, it is restarted on new ports, a bounded number of times); no pop3s/imaps listeners
// - users in a passwd-file, passwords hashed with `doveadm pw -s SHA512-CRYPT`; optionally a static passdb that
//   accepts ANY username with one password (to get successful logins for usernames a passwd-file cannot hold)
// - auth_username_chars configurable ('' = any character allowed), login_trusted_networks unset, ssl = no
//   (or yes with a self-signed certificate made at start with openssl)
// - no DNS: a fixed `hostname`, IP literals only
// - waits until the POP3 and IMAP greetings are readable (one probe connection each, from `probeAddress`,
//   default 127.0.0.1: they appear in the log as `Disconnected: ... (no auth attempts in 0 secs)` lines)
// - stop(): `doveadm -c FILE stop`, then SIGKILL of the process group as fallback; removes the temp dir
//
// Needs root (Dovecot's master drops privileges per service; mail processes run as `mailUid`, default nobody).
//
//   const dc = await startDovecot({ users: [{ user: 'alice', pass: 'secret' }] });
//   await pop3Login({ host: '127.0.0.1', port: dc.pop3Port, user: 'alice', pass: 'secret', localAddress: '127.0.0.7' });
//   const { log } = await dc.stop();
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm, writeFile, chmod, chown } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts, pollFor, run, runOk, waitExit } from './proc.ts';
import { probeGreeting } from './clients.ts';

export interface DovecotUser {
  user: string;
  pass: string;
}

export interface DovecotOpts {
  users?: DovecotUser[];
  /** `auth_username_chars`; undefined = Dovecot's default; '' = allow any character */
  usernameChars?: string;
  /** `auth_username_format`; undefined = Dovecot's default (`%Lu`, lowercases); '%u' keeps the case */
  usernameFormat?: string;
  /** add a static passdb after the passwd-file: any username with this password logs in */
  anyUserPassword?: string;
  /** instance_name (syslog ident); default `dovecot` */
  instanceName?: string;
  /** 'file' (log_path in the temp dir, default) or 'syslog' (log_path = syslog; give `wrap` to route /dev/log) */
  log?: 'file' | 'syslog';
  /** wraps the dovecot argv, e.g. PrivateRsyslog.wrap so that syslog(3) reaches a private rsyslogd */
  wrap?: (argv: string[]) => string[];
  /** listen addresses (default 127.0.0.1 and ::1) */
  listen?: string[];
  /** TLS with a self-signed certificate made now (default false: ssl = no) */
  ssl?: boolean;
  /** `login_log_format_elements` override */
  loginLogFormatElements?: string;
  /** auth_verbose = yes (adds auth(...) lines for failures) */
  authVerbose?: boolean;
  /** extra config text appended at the end */
  extraConfig?: string;
  /** uid/gid for mail processes (default 65534/65534) */
  mailUid?: number;
  mailGid?: number;
  /** source address of the readiness probes (default 127.0.0.1) */
  probeAddress?: string;
  /** parent directory of the temp dir (default os.tmpdir()) */
  parentDir?: string;
  /** start attempts when a port is taken in between (default 5) */
  attempts?: number;
  startTimeoutMs?: number;
}

export interface PrivateDovecot {
  pop3Port: number;
  imapPort: number;
  /** the log_path file ('' in syslog mode) */
  logPath: string;
  configFile: string;
  dir: string;
  version: string;
  pid: number;
  /** current log_path text (may lag a few ms behind the server) */
  readLog(): Promise<string>;
  /** stop Dovecot, return the final log_path text, remove the temp dir unless keep */
  stop(opts?: { keep?: boolean }): Promise<{ log: string }>;
}

/** `{SHA512-CRYPT}$6$...` for a password, made by Dovecot itself. */
export async function hashPassword(pass: string): Promise<string> {
  // -O: read no config file; the password goes on stdin twice (doveadm pw asks for it and a retype).
  const r = await runOk('doveadm', ['-O', 'pw', '-s', 'SHA512-CRYPT'], { input: `${pass}\n${pass}\n` });
  const h = r.stdout.trim().split('\n').pop() ?? '';
  if (!h.startsWith('{SHA512-CRYPT}$6$')) throw new Error(`doveadm pw: unexpected output ${JSON.stringify(r.stdout)}`);
  return h;
}

/** Dovecot config value: Dovecot reads the rest of the line; quote it when it has leading/trailing blanks or `#`. */
function confValue(v: string): string {
  if (/[\r\n]/.test(v)) throw new Error('config value with a newline');
  if (v === '' || !/^\s|\s$|#|"/.test(v)) return v;
  return `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

async function writeConfig(dir: string, o: DovecotOpts, pop3Port: number, imapPort: number): Promise<string> {
  const conf = join(dir, 'dovecot.conf');
  const listen = (o.listen ?? ['127.0.0.1', '::1']).join(', ');
  const uid = o.mailUid ?? 65534;
  const gid = o.mailGid ?? 65534;
  const lines = [
    `# private test instance, generated by test/helpers/dovecot.ts`,
    `base_dir = ${join(dir, 'run')}`,
    `state_dir = ${join(dir, 'state')}`,
    `instance_name = ${confValue(o.instanceName ?? 'dovecot')}`,
    `log_path = ${o.log === 'syslog' ? 'syslog' : join(dir, 'dovecot.log')}`,
    `syslog_facility = mail`,
    `hostname = relaygate-test.invalid`,
    `protocols = pop3 imap`,
    `listen = ${listen}`,
    `login_trusted_networks =`,
    `disable_plaintext_auth = no`,
    `auth_mechanisms = plain login`,
    `auth_verbose = ${o.authVerbose ? 'yes' : 'no'}`,
    ...(o.usernameChars !== undefined ? [`auth_username_chars = ${confValue(o.usernameChars)}`] : []),
    ...(o.usernameFormat !== undefined ? [`auth_username_format = ${confValue(o.usernameFormat)}`] : []),
    ...(o.loginLogFormatElements !== undefined ? [`login_log_format_elements = ${confValue(o.loginLogFormatElements)}`] : []),
    `first_valid_uid = 1`,
    `mail_location = maildir:${join(dir, 'home', 'Maildir')}`,
    `pop3_uidl_format = %08Xu%08Xv`,
    `shutdown_clients = yes`,
    `passdb {`,
    `  driver = passwd-file`,
    `  args = scheme=SHA512-CRYPT ${join(dir, 'users')}`,
    `}`,
    ...(o.anyUserPassword !== undefined ? [`passdb {`, `  driver = static`, `  args = password=${confValue(o.anyUserPassword)}`, `}`] : []),
    `userdb {`,
    `  driver = static`,
    `  args = uid=${uid} gid=${gid} home=${join(dir, 'home')}`,
    `}`,
    `service pop3-login {`,
    `  inet_listener pop3 {`,
    `    port = ${pop3Port}`,
    `  }`,
    `  inet_listener pop3s {`,
    `    port = 0`,
    `  }`,
    `}`,
    `service imap-login {`,
    `  inet_listener imap {`,
    `    port = ${imapPort}`,
    `  }`,
    `  inet_listener imaps {`,
    `    port = 0`,
    `  }`,
    `}`,
  ];
  if (o.ssl) {
    lines.push(`ssl = yes`, `ssl_cert = <${join(dir, 'cert.pem')}`, `ssl_key = <${join(dir, 'key.pem')}`);
  } else {
    lines.push(`ssl = no`);
  }
  if (o.extraConfig) lines.push(o.extraConfig);
  await writeFile(conf, lines.join('\n') + '\n');
  return conf;
}

export async function startDovecot(o: DovecotOpts = {}): Promise<PrivateDovecot> {
  if (process.getuid?.() !== 0) throw new Error('startDovecot: needs root');
  const version = (await runOk('dovecot', ['--version'])).stdout.trim();
  const dir = await mkdtemp(join(o.parentDir ?? tmpdir(), 'rg-dovecot-'));
  try {
    await chmod(dir, 0o755); // auth (user dovecot) reads the passwd-file, mail processes (nobody) the home
    const home = join(dir, 'home');
    await mkdir(join(dir, 'state'));
    await mkdir(home);
    await chown(home, o.mailUid ?? 65534, o.mailGid ?? 65534);
    const entries: string[] = [];
    for (const u of o.users ?? []) {
      if (/[:\r\n\0]/.test(u.user)) throw new Error(`passwd-file cannot hold user ${JSON.stringify(u.user)}`);
      // passwd-file looks the name up in escaped form (Dovecot's str_escape: a backslash before each \\, " and ')
      entries.push(`${u.user.replace(/[\\"']/g, '\\$&')}:${await hashPassword(u.pass)}::::::`);
    }
    await writeFile(join(dir, 'users'), entries.join('\n') + '\n', { mode: 0o644 });
    if (o.ssl) {
      await runOk('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1',
        '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')]);
    }
    const logPath = o.log === 'syslog' ? '' : join(dir, 'dovecot.log');
    const listen = o.listen ?? ['127.0.0.1', '::1'];
    const probeHost = listen.includes('127.0.0.1') ? '127.0.0.1' : (listen[0] ?? '127.0.0.1');
    const attempts = o.attempts ?? 5;
    let lastErr = '';
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const [pop3Port, imapPort] = (await freePorts(2, listen)) as [number, number];
      const configFile = await writeConfig(dir, o, pop3Port, imapPort);
      const argv = ['dovecot', '-F', '-c', configFile];
      const [cmd, ...args] = o.wrap ? o.wrap(argv) : argv;
      const child: ChildProcess = spawn(cmd as string, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      let out = '';
      child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
      const probe = async (port: number, protocol: 'pop3' | 'imap'): Promise<true | undefined> => {
        if (child.exitCode !== null || child.signalCode !== null) return true; // died: stop polling
        try {
          await probeGreeting({ host: probeHost, port, protocol, localAddress: o.probeAddress ?? probeHost, timeoutMs: 2_000, expectGreeting: /Dovecot/ });
          return true;
        } catch {
          return undefined;
        }
      };
      const deadline = o.startTimeoutMs ?? 15_000;
      const up = (await pollFor(() => probe(pop3Port, 'pop3'), deadline, 100)) && (await pollFor(() => probe(imapPort, 'imap'), deadline, 100));
      const died = child.exitCode !== null || child.signalCode !== null;
      if (up && !died) {
        const pid = child.pid as number;
        const stop = async (so: { keep?: boolean } = {}): Promise<{ log: string }> => {
          await run('doveadm', ['-c', configFile, 'stop'], { timeoutMs: 10_000 }).catch(() => undefined);
          if (!(await waitExit(child, 10_000))) {
            try {
              process.kill(-pid, 'SIGKILL');
            } catch {
              /* already gone */
            }
            await waitExit(child, 3_000);
          }
          const log = logPath ? await readFile(logPath, 'utf8').catch(() => '') : '';
          if (!so.keep) await rm(dir, { recursive: true, force: true });
          return { log };
        };
        return {
          pop3Port,
          imapPort,
          logPath,
          configFile,
          dir,
          version,
          pid,
          readLog: () => (logPath ? readFile(logPath, 'utf8') : Promise.resolve('')),
          stop,
        };
      }
      // Failed: kill whatever is left, look at why, maybe retry on other ports.
      if (!died) {
        try {
          process.kill(-(child.pid as number), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      await waitExit(child, 3_000);
      const fileLog = logPath ? await readFile(logPath, 'utf8').catch(() => '') : '';
      lastErr = (out + fileLog).trim();
      if (!/Address already in use|bind\(/.test(lastErr)) break;
    }
    throw new Error(`dovecot did not start: ${lastErr.slice(-2000)}`);
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}
