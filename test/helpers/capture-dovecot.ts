// Reproducible generator of the raw Dovecot samples in test/fixtures/logs/raw/dovecot/.
//
//   node --import tsx test/helpers/capture-dovecot.ts [OUTDIR]      (root; Debian dovecot-core/-pop3d/-imapd, rsyslog)
//
// Runs three private Dovecot instances (configs below), each twice: once with a log_path file and once through a
// private rsyslogd (traditional + RFC 3339 files). Every client attempt runs alone, from its own source address; the
// lines the attempt added to each log are recorded, so each `<file>.notes.md` says which source address and username
// produced which line and whether it is a successful login (a grant) or not.
//
// Configs:
//   default     : Dovecot's default auth_username_chars and auth_username_format (%Lu) -> hostile usernames fail
//   permissive  : auth_username_chars = (empty: any character), default %Lu; the hostile usernames exist in the
//                 passwd-file (lowercased, as %Lu looks them up) with valid passwords -> SUCCESSFUL lines carry them;
//                 a static passdb also accepts ANY username with password `static-any-pw` (newline, 300+ chars)
//   verbatim    : like permissive but auth_username_format = %u (case kept, so `method=PLAIN` stays upper case),
//                 instance_name = dovecot-rg (the syslog ident)
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDovecot, type DovecotOpts, type PrivateDovecot } from './dovecot.ts';
import { startRsyslog, type PrivateRsyslog } from './syslog.ts';
import { run } from './proc.ts';
import { fileLines, Recorder, runAttempt, today, writeCapture, type Attempt, type Classify } from './capture-common.ts';

const OUT = resolve(process.argv[2] ?? join(import.meta.dirname, '../fixtures/logs/raw/dovecot'));

const PW = { alice: 'alice-pw', bob: 'bob pw "quoted"', hostile: 'hostile-pw', any: 'static-any-pw' };

const LONG80 = 'l' + 'o'.repeat(85) + 'ng';
const LONG300 = 'v' + 'e'.repeat(310) + 'rylong';
const LONG300_INJ = 'a'.repeat(300) + ', method=PLAIN, rip=6.6.6.6';
const HOSTILE = {
  gt: 'x>, method=PLAIN, rip=6.6.6.6',
  comma: 'x, rip=6.6.6.6, lip=1.1.1.1',
  fakeTail: 'alice>, method=PLAIN, rip=6.6.6.6, lip=127.0.0.1, mpid=1, session=<abc>',
  fakeLogin: 'x> Login: user=<alice>, method=PLAIN, rip=6.6.6.6, lip=127.0.0.1, mpid=1, session=<abc>',
  courier: 'ip=[6.6.6.6]',
  courier2: 'alice, ip=[6.6.6.6], port=[1]',
  quotes: 'a"b\\c',
  dquoted: '"alice"',
};
const NEWLINE_USERS = {
  crlf: 'ev\r\nil',
  lf: 'ev\nil',
  cr: 'ev\ril',
  fakeLine: 'x\nNov 21 16:31:28 pop3-login: Info: Login: user=<alice>, method=PLAIN, rip=6.6.6.6, lip=127.0.0.1, mpid=1, session=<abc>',
};

function baseAttempts(): Attempt[] {
  return [
    // successful logins, 127.0.0.7 (alice) and ::1 (bob)
    { kind: 'pop3-user', src: '127.0.0.7', user: 'alice', pass: PW.alice, valid: true },
    { kind: 'pop3-auth-plain', src: '127.0.0.7', user: 'alice', pass: PW.alice, valid: true },
    { kind: 'imap-login', src: '127.0.0.7', user: 'alice', pass: PW.alice, valid: true },
    { kind: 'imap-authenticate-plain', src: '127.0.0.7', user: 'alice', pass: PW.alice, valid: true },
    { kind: 'pop3-user', src: '::1', user: 'bob', pass: PW.bob, valid: true },
    { kind: 'imap-login', src: '::1', user: 'bob', pass: PW.bob, valid: true },
    { kind: 'pop3-user', src: '127.0.0.7', user: 'Alice', pass: PW.alice, valid: true, note: 'mixed case; %Lu lowercases it' },
    // failed logins, 127.0.0.8
    { kind: 'pop3-user', src: '127.0.0.8', user: 'alice', pass: 'wrong', valid: false },
    { kind: 'pop3-auth-plain', src: '127.0.0.8', user: 'alice', pass: 'wrong', valid: false },
    { kind: 'imap-login', src: '127.0.0.8', user: 'alice', pass: 'wrong', valid: false },
    { kind: 'imap-authenticate-plain', src: '127.0.0.8', user: 'nosuchuser', pass: 'wrong', valid: false },
    // aborted / no authentication, 127.0.0.9
    { kind: 'pop3-noauth-close', src: '127.0.0.9', valid: false },
    { kind: 'pop3-noauth-quit', src: '127.0.0.9', valid: false },
    { kind: 'pop3-abort-after-user', src: '127.0.0.9', user: 'alice', valid: false },
    { kind: 'imap-noauth-close', src: '127.0.0.9', valid: false },
    { kind: 'imap-noauth-quit', src: '127.0.0.9', valid: false },
  ];
}

// Each hostile attempt comes from its own address: Dovecot's anvil delays replies to an address after failed logins
// (auth penalty, up to 15 s), and a unique address per attempt makes every line's true client address unambiguous.
const addr = (net: number, n: number): string => `127.0.${net}.${n}`;

/** Hostile usernames attempted from 127.0.1.N (wrong password or non-existent user: must never grant). */
function hostileFailures(): Attempt[] {
  const a: Attempt[] = [];
  let n = 0;
  const next = (): string => addr(1, ++n);
  for (const u of [...Object.values(HOSTILE), LONG80, LONG300, LONG300_INJ]) {
    a.push({ kind: 'pop3-user', src: next(), user: u, pass: 'wrong', valid: false });
    a.push({ kind: 'imap-login', src: next(), user: u, pass: 'wrong', valid: false });
  }
  a.push({ kind: 'pop3-user', src: next(), user: NEWLINE_USERS.cr, pass: 'wrong', valid: false, note: 'bare CR inside the USER line' });
  a.push({ kind: 'imap-login-literal', src: next(), user: NEWLINE_USERS.crlf, pass: 'wrong', valid: false, note: 'CRLF inside an IMAP literal' });
  a.push({ kind: 'pop3-auth-plain', src: next(), user: NEWLINE_USERS.lf, pass: 'wrong', valid: false, note: 'LF inside AUTH PLAIN' });
  a.push({ kind: 'pop3-auth-plain', src: next(), user: NEWLINE_USERS.fakeLine, pass: 'wrong', valid: false, note: 'LF + a whole fake log_path line' });
  a.push({ kind: 'imap-login-literal', src: next(), user: 'jürgen', pass: 'wrong', valid: false, note: 'UTF-8' });
  return a;
}

/** Successful logins with hostile usernames that exist (permissive configs), from 127.0.2.N / ::1; failures from 127.0.3.N. */
function hostileSuccesses(): Attempt[] {
  const a: Attempt[] = [];
  let n = 0;
  const next = (): string => addr(2, ++n);
  let m = 0;
  for (const u of [...Object.values(HOSTILE), LONG80, LONG300, LONG300_INJ]) {
    const pass = u.includes(':') ? PW.any : PW.hostile;
    a.push({ kind: 'pop3-user', src: next(), user: u, pass, valid: true });
    a.push({ kind: 'imap-login', src: next(), user: u, pass, valid: true });
  }
  a.push({ kind: 'pop3-auth-plain', src: '::1', user: HOSTILE.comma, pass: PW.hostile, valid: true });
  a.push({ kind: 'imap-authenticate-plain', src: '::1', user: HOSTILE.fakeTail, pass: PW.hostile, valid: true });
  // static passdb: any username with PW.any
  a.push({ kind: 'pop3-user', src: next(), user: NEWLINE_USERS.cr, pass: PW.any, valid: true, note: 'static passdb; bare CR' });
  a.push({ kind: 'imap-login-literal', src: next(), user: NEWLINE_USERS.crlf, pass: PW.any, valid: true, note: 'static passdb; CRLF in literal' });
  a.push({ kind: 'pop3-auth-plain', src: next(), user: NEWLINE_USERS.lf, pass: PW.any, valid: true, note: 'static passdb; LF' });
  a.push({ kind: 'pop3-auth-plain', src: next(), user: NEWLINE_USERS.fakeLine, pass: PW.any, valid: true, note: 'static passdb; LF + fake line' });
  a.push({ kind: 'imap-login-literal', src: next(), user: 'jürgen', pass: PW.any, valid: true, note: 'static passdb; UTF-8' });
  // the same hostile names with a wrong password (must not grant)
  for (const u of [HOSTILE.gt, HOSTILE.comma, HOSTILE.fakeTail]) {
    a.push({ kind: 'pop3-user', src: addr(3, ++m), user: u, pass: 'wrong', valid: false });
  }
  return a;
}

interface Config {
  name: string;
  describe: string;
  opts: DovecotOpts;
  attempts: Attempt[];
}

function configs(): Config[] {
  const hostileUsers = (lower: boolean) =>
    [...Object.values(HOSTILE), LONG80, LONG300, LONG300_INJ]
      .filter((u) => !u.includes(':')) // a passwd-file cannot hold these: the static passdb logs them in
      .map((u) => ({ user: lower ? u.toLowerCase() : u, pass: PW.hostile }));
  const users = [
    { user: 'alice', pass: PW.alice },
    { user: 'bob', pass: PW.bob },
  ];
  return [
    {
      name: 'default',
      describe: "auth_username_chars = Dovecot default (letters, digits, `.-_@`), auth_username_format = %Lu (default), passwd-file users alice, bob; instance_name = dovecot",
      opts: { users, instanceName: 'dovecot' },
      attempts: [...baseAttempts(), ...hostileFailures()],
    },
    {
      name: 'permissive',
      describe:
        'auth_username_chars = (empty: any character), auth_username_format = %Lu (default); passwd-file users alice, bob and the hostile usernames (lowercased) with password `hostile-pw`; a second passdb `static` accepts ANY username with password `static-any-pw`; instance_name = dovecot',
      opts: { users: [...users, ...hostileUsers(true)], usernameChars: '', anyUserPassword: PW.any, instanceName: 'dovecot' },
      attempts: [...baseAttempts(), ...hostileSuccesses()],
    },
    {
      name: 'verbatim',
      describe:
        'auth_username_chars = (empty), auth_username_format = %u (case kept); passwd-file users alice, bob and the hostile usernames (exact case) with password `hostile-pw`; static passdb accepts ANY username with `static-any-pw`; instance_name = dovecot-rg',
      opts: { users: [...users, ...hostileUsers(false)], usernameChars: '', usernameFormat: '%u', anyUserPassword: PW.any, instanceName: 'dovecot-rg' },
      attempts: [...baseAttempts(), ...hostileSuccesses()],
    },
  ];
}

const SUCCESS_RE = /^(?:\S+ +){1,6}?(?:pop3|imap)-login: (?:Info: )?Login: user=</;
const LOGOUT_RE = /^(?:\S+ +){1,6}?(?:pop3|imap)\([\s\S]*\)<\d+><[^>]*>: (?:Info: )?Disconnected: Logged out/;

/** Verdict per line of one attempt (the attempt's usernames are ours, so these simple patterns are safe here). */
const classify: Classify = (line, a, ok) => {
  if (ok && SUCCESS_RE.test(line)) return `GRANT ${a.src}`;
  if (ok && LOGOUT_RE.test(line)) return 'session end (Logged out), no grant';
  if (ok && /[\r\n]/.test(a.user ?? '')) return 'piece of the session-end line, split at the CR/LF of the username, no grant';
  return 'no grant';
};

async function capture(cfg: Config, mode: 'file' | 'syslog', pkgVersion: string): Promise<void> {
  let rs: PrivateRsyslog | undefined;
  let dc: PrivateDovecot | undefined;
  try {
    if (mode === 'syslog') rs = await startRsyslog({ hostname: 'mx' });
    const startAt = Date.now();
    dc = await startDovecot({ ...cfg.opts, log: mode, ...(rs ? { wrap: rs.wrap } : {}) });
    const rec = new Recorder(rs ? [rs.traditionalPath, rs.rfc3339Path] : [dc.logPath]);
    await rec.mark({ label: 'startup (master starting up) and the two readiness probes from 127.0.0.1 (POP3, IMAP: no auth attempts)' });
    for (const a of cfg.attempts) {
      const result = await runAttempt(a, { pop3: dc.pop3Port, imap: dc.imapPort }, /Dovecot/);
      await rec.mark({ label: a.kind, attempt: a, result });
      const ok = typeof result === 'string' ? result : result.ok ? 'OK' : 'refused';
      console.log(`[${cfg.name}/${mode}] ${a.src} ${a.kind} ${JSON.stringify(a.user ?? '').slice(0, 100)} -> ${ok}`);
    }
    const dcDir = dc.dir;
    await dc.stop({ keep: true });
    dc = undefined;
    await sleep(300);
    if (rs) await rs.stop({ keep: true }); // flushes the files
    await rec.mark({ label: 'shutdown' }, false);
    const elapsed = Math.round((Date.now() - startAt) / 1000);

    const names = mode === 'file' ? [`${cfg.name}-logpath.log`] : [`${cfg.name}-syslog-traditional.log`, `${cfg.name}-syslog-rfc3339.log`];
    for (const [j, p] of rec.paths.entries()) {
      const name = names[j]!;
      const header = [
        `Program: Dovecot ${pkgVersion}, Debian 12. Generated by \`test/helpers/capture-dovecot.ts\` (${today()}, ${elapsed} s).`,
        mode === 'file'
          ? 'Format: Dovecot `log_path` file (`Mon DD HH:MM:SS <process>: Info: <msg>`, no host). Bytes as Dovecot wrote them (a raw CR can occur inside a line).'
          : `Format: through a private rsyslogd 8.2302 (imuxsock, hostname \`mx\`), template ${j === 0 ? '`RSYSLOG_TraditionalFileFormat` (BSD: `Nov 21 16:33:39 mx ident: msg`)' : '`RSYSLOG_FileFormat` (RFC 3339, Debian 12 default)'}; ident = instance_name \`${cfg.opts.instanceName ?? 'dovecot'}\`. rsyslog writes control characters as \`#015\` etc.`,
        `Config: ${cfg.describe}. Listen 127.0.0.1 and ::1, ssl = no, login_trusted_networks unset, disable_plaintext_auth = no.`,
        'Clients: raw sockets (test/helpers/clients.ts), one attempt at a time, each hostile one from its own source address; lines are attributed by what the attempt appended to the file.',
        "Expected: only a line marked `GRANT <ip>` is a successful login, and the IP to authorize is the one given (the client's real source address), never an address inside the username. `session end` lines are Dovecot 2.3 `Disconnected: Logged out` lines (logout tracking; they carry the session id, not the IP). Everything else must not match.",
      ];
      await writeCapture(OUT, name, await fileLines(p), header, rec.segs[j]!, classify);
    }
    console.log(`[${cfg.name}/${mode}] done in ${elapsed} s`);
    await rm(dcDir, { recursive: true, force: true });
    if (rs) await rm(rs.dir, { recursive: true, force: true });
    rs = undefined;
  } finally {
    if (dc) await dc.stop().catch(() => undefined);
    if (rs) await rs.stop().catch(() => undefined);
  }
}

const pkg = await run('dpkg-query', ['-W', '-f', '${Version}', 'dovecot-core']);
const ver = (await run('dovecot', ['--version'])).stdout.trim();
const pkgVersion = `${ver} (dovecot-core ${pkg.stdout.trim()})`;
const only = process.env.CAPTURE_ONLY;
const jobs: Promise<void>[] = [];
for (const cfg of configs()) {
  if (only && !only.split(',').includes(cfg.name)) continue;
  for (const mode of ['file', 'syslog'] as const) jobs.push(capture(cfg, mode, pkgVersion));
}
const results = await Promise.allSettled(jobs);
for (const r of results) if (r.status === 'rejected') console.error(r.reason);
process.exitCode = results.some((r) => r.status === 'rejected') ? 1 : 0;
