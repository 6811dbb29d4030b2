// Reproducible generator of test/fixtures/logs/raw/popa3d/: real popa3d (Debian 12 package 1.0.3) lines through a
// private rsyslogd.
//
//   node --import tsx test/helpers/capture-popa3d.ts [OUTDIR]          (root)
//
// popa3d conflicts with dovecot-pop3d (both provide pop3-server), so it need not be installed: unpack it
//   apt-get download popa3d && dpkg -x popa3d_*.deb /tmp/popa3d-root
// and set POPA3D_BIN=/tmp/popa3d-root/usr/sbin/popa3d (default /usr/sbin/popa3d).
//
// popa3d -D (standalone) always listens on 0.0.0.0:110, so this script re-runs itself in a private network namespace
// (only `lo`): nothing outside can reach it, and no lookup can leave. It creates the `popa3d` system user and
// /var/lib/popa3d (its chroot) when missing, two test users with passwords (useradd + chpasswd) and empty
// /var/mail spools, and removes all of them at the end. PAM service `popa3d` falls back to /etc/pam.d/other
// (pam_unix) when the package's /etc/pam.d/popa3d is absent.
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile, chown, rmdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawn } from 'node:child_process';
import { startRsyslog, type PrivateRsyslog } from './syslog.ts';
import { run, runOk, pollFor, alive } from './proc.ts';
import { ensurePrivateNetns, fileLines, Recorder, runAttempt, today, writeCapture, type Attempt } from './capture-common.ts';

ensurePrivateNetns();

const OUT = resolve(process.argv[2] ?? join(import.meta.dirname, '../fixtures/logs/raw/popa3d'));
const BIN = process.env.POPA3D_BIN ?? '/usr/sbin/popa3d';
const USERS = { alice: 'rgpopalice', bob: 'rgpopbob' };
const PW = { alice: 'Alice-pw-1', bob: 'Bob-pw-2' };

const attempts: Attempt[] = [
  { kind: 'pop3-user', src: '127.0.0.7', user: USERS.alice, pass: PW.alice, valid: true },
  { kind: 'pop3-user', src: '127.0.0.14', user: USERS.bob, pass: PW.bob, valid: true }, // popa3d -D listens on IPv4 only
  { kind: 'pop3-user', src: '127.0.0.8', user: USERS.alice, pass: 'wrong', valid: false },
  { kind: 'pop3-user', src: '127.0.0.10', user: 'nosuchuser', pass: 'wrong', valid: false },
  { kind: 'pop3-noauth-close', src: '127.0.0.9', valid: false },
  { kind: 'pop3-noauth-quit', src: '127.0.0.12', valid: false },
  { kind: 'pop3-abort-after-user', src: '127.0.0.13', user: USERS.alice, valid: false },
  // hostile usernames, each from its own address, all with a wrong password (must never grant)
  { kind: 'pop3-user', src: '127.0.1.1', user: `Authentication passed for ${USERS.alice}`, pass: 'wrong', valid: false, note: 'fake success text' },
  { kind: 'pop3-user', src: '127.0.1.2', user: 'x>, method=PLAIN, rip=6.6.6.6', pass: 'wrong', valid: false },
  { kind: 'pop3-user', src: '127.0.1.3', user: 'Session from 6.6.6.6', pass: 'wrong', valid: false, note: 'fake session text' },
  { kind: 'pop3-user', src: '127.0.1.4', user: `${USERS.alice} ip=[6.6.6.6]`, pass: 'wrong', valid: false },
  { kind: 'pop3-user', src: '127.0.1.5', user: 'a"b\\c', pass: 'wrong', valid: false, note: 'quotes' },
  { kind: 'pop3-user', src: '127.0.1.6', user: 'ev\ril', pass: 'wrong', valid: false, note: 'bare CR' },
  { kind: 'pop3-user', src: '127.0.1.7', user: 'v' + 'e'.repeat(310) + 'rylong', pass: 'wrong', valid: false, note: '300+ chars' },
  { kind: 'pop3-user', src: '127.0.1.8', user: USERS.alice + ' ', pass: PW.alice, valid: true, note: 'trailing blank (popa3d drops it)' },
];

const created: { popa3dUser: boolean; chroot: boolean; users: string[]; spools: string[] } = { popa3dUser: false, chroot: false, users: [], spools: [] };

async function setup(): Promise<void> {
  if ((await run('getent', ['passwd', 'popa3d'])).code !== 0) {
    await runOk('useradd', ['--system', '--no-create-home', '--home-dir', '/var/lib/popa3d', '--shell', '/usr/sbin/nologin', 'popa3d']);
    created.popa3dUser = true;
  }
  if (!existsSync('/var/lib/popa3d')) {
    await mkdir('/var/lib/popa3d', { mode: 0o755 });
    created.chroot = true;
  }
  for (const [k, u] of Object.entries(USERS)) {
    if ((await run('getent', ['passwd', u])).code !== 0) {
      await runOk('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', u]);
      created.users.push(u);
    }
    await runOk('chpasswd', [], { input: `${u}:${PW[k as keyof typeof PW]}\n` });
    const spool = `/var/mail/${u}`;
    if (!existsSync(spool)) {
      await writeFile(spool, '', { mode: 0o600 });
      const id = (await runOk('id', ['-u', u])).stdout.trim();
      await chown(spool, Number(id), 8 /* mail */);
      created.spools.push(spool);
    }
  }
}

async function cleanup(): Promise<void> {
  for (const s of created.spools) await rm(s, { force: true });
  for (const u of created.users) await run('userdel', [u]);
  if (created.popa3dUser) await run('userdel', ['popa3d']);
  if (created.chroot) await rmdir('/var/lib/popa3d').catch(() => undefined);
}

async function listenerPid(port: number): Promise<number | undefined> {
  const r = await run('ss', ['-Hltnp', `sport = :${port}`]);
  const m = /pid=(\d+)/.exec(r.stdout);
  return m ? Number(m[1]) : undefined;
}

async function main(): Promise<void> {
  if (!existsSync(BIN)) throw new Error(`popa3d not found at ${BIN} (see the header of this file)`);
  const version = (await run(BIN, ['-V'])).stdout.trim() || (await run(BIN, ['-V'])).stderr.trim();
  const pkg = (await run('dpkg-deb', ['-f', process.env.POPA3D_DEB ?? '/nonexistent', 'Version'])).stdout.trim() || '1.0.3-1.1 (Debian 12)';
  let rs: PrivateRsyslog | undefined;
  let pid: number | undefined;
  await setup();
  try {
    rs = await startRsyslog({ hostname: 'mx' });
    const rec = new Recorder([rs.traditionalPath, rs.rfc3339Path]);
    const [cmd, ...args] = rs.wrap([BIN, '-D']);
    const child = spawn(cmd!, args, { stdio: 'ignore' });
    await new Promise((r) => child.once('exit', r));
    pid = await pollFor(() => listenerPid(110), 5_000);
    if (!pid) throw new Error('popa3d -D is not listening on :110');
    console.log(`popa3d pid ${pid}; ${version}`);
    await rec.mark({ label: 'startup' }, false);
    for (const a of attempts) {
      const result = await runAttempt(a, { pop3: 110 });
      await rec.mark({ label: a.kind, attempt: a, result }, true, 8_000);
      console.log(`${a.src} ${a.kind} ${JSON.stringify(a.user ?? '').slice(0, 80)} -> ${typeof result === 'string' ? result : result.ok ? 'OK' : 'refused: ' + result.reply}`);
    }
    process.kill(pid, 'SIGTERM');
    await pollFor(() => (alive(pid as number) ? undefined : true), 5_000);
    await sleep(200);
    const { traditional, rfc3339 } = await rs.stop({ keep: true });
    void traditional;
    void rfc3339;
    await rec.mark({ label: 'shutdown' }, false);
    const success = /^\S+(?: +\S+){0,3} mx popa3d\[\d+\]: Authentication passed for /;
    const classify = (line: string, a: Attempt, ok: boolean): string => {
      if (ok && success.test(line)) return `GRANT ${a.src} (joined by pid with the "Session from" line)`;
      if (/ popa3d\[\d+\]: Session from /.test(line)) return ok ? `session start: the address to grant (${a.src}) comes from this line` : 'session start, no grant';
      return 'no grant';
    };
    for (const [j, name] of ['popa3d-syslog-traditional.log', 'popa3d-syslog-rfc3339.log'].entries()) {
      const lines = await fileLines(rec.paths[j]!);
      const header = [
        `Program: popa3d ${version.replace(/^popa3d version /, '')} (Debian 12 package ${pkg}), standalone (\`popa3d -D\`, 0.0.0.0:110 in a private network namespace), PAM (/etc/pam.d/other -> pam_unix), system users \`${USERS.alice}\`, \`${USERS.bob}\`. Generated by \`test/helpers/capture-popa3d.ts\` (${today()}).`,
        `Format: private rsyslogd 8.2302 (hostname \`mx\`), template ${j === 0 ? '`RSYSLOG_TraditionalFileFormat`' : '`RSYSLOG_FileFormat` (RFC 3339, Debian 12 default)'}; ident \`popa3d[PID]\` (LOG_PID).`,
        'Shape: a session is two or more lines of one pid: `Session from <IP>` (written by the child right after accept), then `Authentication passed for <user>` / `Authentication failed for <user>` / `Didn\'t attempt authentication`. The IP is on the first line only: a parser joins them by pid (pids are reused, so drop a pending session at the next `Session from` of the same pid).',
        'Clients: raw sockets (test/helpers/clients.ts), one attempt at a time, each from its own source address.',
        'Expected: only `GRANT <ip>` lines grant, with the IP of that pid\'s `Session from` line.',
      ];
      await writeCapture(OUT, name, lines, header, rec.segs[j]!, classify);
    }
    await rm(rs.dir, { recursive: true, force: true });
    rs = undefined;
  } finally {
    if (pid && alive(pid)) process.kill(pid, 'SIGKILL');
    if (rs) await rs.stop().catch(() => undefined);
    await cleanup();
  }
}

await main();
