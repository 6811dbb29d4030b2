// Reproducible generator of test/fixtures/logs/raw/cyrus/: real Cyrus IMAP 3.6 imapd/pop3d lines through a private
// rsyslogd.
//
//   node --import tsx test/helpers/capture-cyrus.ts [OUTDIR]          (root)
//
// cyrus-imapd / cyrus-pop3d conflict with dovecot-imapd / -pop3d (imap-server, pop3-server), and cyrus-common pulls
// an MTA, so nothing of Cyrus need be installed: install only its libraries and unpack the three packages:
//   apt-get install libclamav12 libical3 libicu72 libjansson4 libkrb5-3 libldap-2.5-0 libpcre3 libpq5 libsqlite3-0 \
//     libxapian30 libxml2 libzephyr4 libwrap0 libcom-err2      (sasl2-bin for saslpasswd2)
//   apt-get download cyrus-common cyrus-imapd cyrus-pop3d && for f in cyrus-*.deb; do dpkg -x $f /tmp/rg-cyrus-root; done
// and set CYRUS_ROOT=/tmp/rg-cyrus-root (default: / = installed packages).
//
// Everything runs in a private network namespace (only `lo`): Cyrus listens on wildcard ports there and any lookup
// it tries cannot leave. Users live in a private sasldb (auxprop, saslpasswd2), mailboxes are autocreated at login.
// The `cyrus` user (Cyrus's compiled-in run user) is created when missing and removed at the end.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startRsyslog, type PrivateRsyslog } from './syslog.ts';
import { run, runOk, pollFor, waitExit } from './proc.ts';
import { probeGreeting } from './clients.ts';
import { ensurePrivateNetns, fileLines, Recorder, runAttempt, today, writeCapture, type Attempt } from './capture-common.ts';

ensurePrivateNetns();

const OUT = resolve(process.argv[2] ?? join(import.meta.dirname, '../fixtures/logs/raw/cyrus'));
const ROOT = process.env.CYRUS_ROOT ?? '/';
const BIN = join(ROOT, 'usr/lib/cyrus/bin');
const LIBS = join(ROOT, 'usr/lib/x86_64-linux-gnu');
const REALM = 'mx';
const PORTS = { imap: 10143, pop3: 10110 };
const PW = { alice: 'alice-pw', bob: 'bob-pw', hostile: 'hostile-pw' };

/**
 * Hostile usernames that also get a sasldb entry (lowercased: Cyrus lowercases login names, username_tolower
 * defaults on), so a successful login carries them if Cyrus lets them through.
 */
const HOSTILE = [
  'x [6.6.6.6] alice',
  '[6.6.6.6] alice',
  'alice plaintext User logged in',
  'x>, method=PLAIN, rip=6.6.6.6',
  'login: mx [6.6.6.6] alice',
  'a"b\\c',
];

function attempts(): Attempt[] {
  const a: Attempt[] = [
    { kind: 'imap-login', src: '127.0.0.7', user: 'rgalice', pass: PW.alice, valid: true },
    { kind: 'imap-authenticate-plain', src: '127.0.0.7', user: 'rgalice', pass: PW.alice, valid: true },
    { kind: 'pop3-user', src: '127.0.0.7', user: 'rgalice', pass: PW.alice, valid: true },
    { kind: 'pop3-auth-plain', src: '127.0.0.7', user: 'rgalice', pass: PW.alice, valid: true },
    { kind: 'imap-login', src: '::1', user: 'rgbob', pass: PW.bob, valid: true },
    { kind: 'pop3-user', src: '::1', user: 'rgbob', pass: PW.bob, valid: true },
    { kind: 'imap-login', src: '127.0.0.8', user: 'rgalice', pass: 'wrong', valid: false },
    { kind: 'pop3-user', src: '127.0.0.8', user: 'rgalice', pass: 'wrong', valid: false },
    { kind: 'imap-authenticate-plain', src: '127.0.0.8', user: 'nosuchuser', pass: 'wrong', valid: false },
    { kind: 'pop3-noauth-close', src: '127.0.0.9', valid: false },
    { kind: 'imap-noauth-quit', src: '127.0.0.9', valid: false },
  ];
  let n = 0;
  for (const u of HOSTILE) {
    a.push({ kind: 'imap-login', src: `127.0.2.${++n}`, user: u, pass: PW.hostile, valid: true, note: 'user exists in sasldb' });
    a.push({ kind: 'pop3-user', src: `127.0.2.${++n}`, user: u, pass: PW.hostile, valid: true, note: 'user exists in sasldb' });
  }
  let m = 0;
  for (const u of [...HOSTILE, 'v' + 'e'.repeat(310) + 'rylong']) {
    a.push({ kind: 'imap-login', src: `127.0.1.${++m}`, user: u, pass: 'wrong', valid: false });
  }
  a.push({ kind: 'imap-login-literal', src: `127.0.1.${++m}`, user: 'ev\r\nil', pass: 'wrong', valid: false, note: 'CRLF in literal' });
  return a;
}

const created = { cyrusUser: false };

async function main(): Promise<void> {
  const env = ROOT === '/' ? process.env : { ...process.env, LD_LIBRARY_PATH: LIBS };
  if ((await run('getent', ['passwd', 'cyrus'])).code !== 0) {
    await runOk('useradd', ['--system', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', '--gid', 'mail', 'cyrus']);
    created.cyrusUser = true;
  }
  const dir = await mkdtemp(join(tmpdir(), 'rg-cyrus-'));
  let rs: PrivateRsyslog | undefined;
  let master: ChildProcess | undefined;
  try {
    await chmod(dir, 0o755);
    for (const d of ['config', 'config/db', 'config/proc', 'config/socket', 'config/log', 'spool', 'sieve']) await mkdir(join(dir, d), { recursive: true });
    const imapdConf = join(dir, 'imapd.conf');
    const cyrusConf = join(dir, 'cyrus.conf');
    await writeFile(
      imapdConf,
      [
        `configdirectory: ${dir}/config`,
        `defaultpartition: default`,
        `partition-default: ${dir}/spool`,
        `sievedir: ${dir}/sieve`,
        `servername: ${REALM}`,
        `admins: cyrusadm`,
        `allowplaintext: yes`,
        `sasl_pwcheck_method: auxprop`,
        `sasl_auxprop_plugin: sasldb`,
        `sasl_sasldb_path: ${dir}/sasldb2`,
        `sasl_mech_list: PLAIN LOGIN`,
        `reverselookup: no`,
        `autocreate_quota: 0`,
        `unixhierarchysep: yes`,
        `idlesocket: ${dir}/config/socket/idle`,
        `notifysocket: ${dir}/config/socket/notify`,
        `lmtpsocket: ${dir}/config/socket/lmtp`,
        `syslog_prefix: cyrus`,
        '',
      ].join('\n'),
    );
    await writeFile(
      cyrusConf,
      [
        'START {',
        `  recover cmd="${BIN}/ctl_cyrusdb -C ${imapdConf} -r"`,
        '}',
        'SERVICES {',
        `  imap cmd="${BIN}/imapd -C ${imapdConf}" listen="${PORTS.imap}" prefork=0 maxchild=20`,
        `  pop3 cmd="${BIN}/pop3d -C ${imapdConf}" listen="${PORTS.pop3}" prefork=0 maxchild=20`,
        '}',
        'EVENTS {',
        '}',
        '',
      ].join('\n'),
    );
    const sasldb = join(dir, 'sasldb2');
    const users: Array<[string, string]> = [['rgalice', PW.alice], ['rgbob', PW.bob], ...HOSTILE.map((u): [string, string] => [u.toLowerCase(), PW.hostile])];
    for (const [u, p] of users) {
      const r = await run('saslpasswd2', ['-p', '-c', '-f', sasldb, '-u', REALM, u], { input: p });
      if (r.code !== 0) console.log(`saslpasswd2 refused ${JSON.stringify(u)}: ${r.stderr.trim()}`);
    }
    await runOk('chown', ['-R', 'cyrus:mail', dir]);
    await chmod(sasldb, 0o640);

    rs = await startRsyslog({ hostname: 'mx' });
    const rec = new Recorder([rs.traditionalPath, rs.rfc3339Path]);
    const [cmd, ...args] = rs.wrap([`${BIN}/master`, '-C', imapdConf, '-M', cyrusConf, '-p', join(dir, 'master.pid')]);
    const child = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env });
    master = child;
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    const up = await pollFor(async () => {
      if (child.exitCode !== null) return false;
      try {
        await probeGreeting({ host: '127.0.0.1', port: PORTS.imap, protocol: 'imap', localAddress: '127.0.0.1', timeoutMs: 2_000 });
        await probeGreeting({ host: '127.0.0.1', port: PORTS.pop3, protocol: 'pop3', localAddress: '127.0.0.1', timeoutMs: 2_000 });
        return true;
      } catch {
        return undefined;
      }
    }, 20_000, 200);
    if (up !== true) throw new Error(`cyrus master did not come up: ${out}\n${(await fileLines(rs.traditionalPath)).join('\n')}`);
    await rec.mark({ label: 'startup (master, recover) and the two readiness probes from 127.0.0.1 (IMAP, POP3: greeting only)' });
    for (const a of attempts()) {
      const result = await runAttempt(a, PORTS, undefined, 15_000);
      await rec.mark({ label: a.kind, attempt: a, result });
      console.log(`${a.src} ${a.kind} ${JSON.stringify(a.user ?? '').slice(0, 80)} -> ${typeof result === 'string' ? result : result.ok ? 'OK' : 'refused: ' + result.reply}`);
    }
    child.kill('SIGTERM');
    if (!(await waitExit(child, 10_000))) process.kill(-(child.pid as number), 'SIGKILL');
    master = undefined;
    await sleep(300);
    await rs.stop({ keep: true });
    await rec.mark({ label: 'shutdown' }, false);

    const version = (await run(`${BIN}/imapd`, ['-V'], { env })).stdout.trim();
    const pkg = (await run('dpkg-deb', ['-f', process.env.CYRUS_DEB ?? '/nonexistent', 'Version'])).stdout.trim() || '3.6.1-4+deb12u5';
    const success = /^(?:\S+ +){1,6}?cyrus\/(?:imap|pop3)\[\d+\]: login: /;
    const classify = (line: string, a: Attempt, ok: boolean): string => {
      if (!success.test(line)) return 'no grant';
      if (ok) return `GRANT ${a.src}`;
      // The password was verified and Cyrus wrote its success line; the session failed only afterwards
      // (POP3 "Unable to open maildrop"). A log reader cannot tell: the line grants like any other login line.
      return `GRANT ${a.src} (password verified; the client then got an error opening the maildrop)`;
    };
    for (const [j, name] of ['cyrus-syslog-traditional.log', 'cyrus-syslog-rfc3339.log'].entries()) {
      const header = [
        `Program: Cyrus IMAP ${version || '3.6.1'} imapd + pop3d (Debian 12 packages cyrus-common/-imapd/-pop3d ${pkg}) under cyrus master. Generated by \`test/helpers/capture-cyrus.ts\` (${today()}).`,
        `Format: private rsyslogd 8.2302 (hostname \`mx\`), template ${j === 0 ? '`RSYSLOG_TraditionalFileFormat`' : '`RSYSLOG_FileFormat` (RFC 3339, Debian 12 default)'}; ident \`cyrus/<service>[PID]\` (syslog_prefix cyrus; services \`imap\`, \`pop3\`).`,
        `Config: sasl_pwcheck_method auxprop/sasldb (realm \`${REALM}\`), allowplaintext yes, reverselookup no, autocreate_quota 0 (INBOX made at first login), listen on wildcard ports ${PORTS.imap}/${PORTS.pop3} inside a private network namespace. sasldb users: rgalice, rgbob, and the hostile names ${HOSTILE.map((h) => '`' + h.toLowerCase() + '`').join(', ')} (stored lowercased; password \`${PW.hostile}\`).`,
        'Clients: raw sockets (test/helpers/clients.ts), one attempt at a time, each hostile one from its own source address.',
        'Expected: only a line marked `GRANT <ip>` is a successful login (`login: <host> [<ip>] <user> <mech> User logged in`); the IP is the one in brackets written by Cyrus, never one inside the username. `badlogin:` and everything else must not match.',
      ];
      await writeCapture(OUT, name, await fileLines(rec.paths[j]!), header, rec.segs[j]!, classify);
    }
    await rm(rs.dir, { recursive: true, force: true });
    rs = undefined;
  } finally {
    if (master && master.exitCode === null) {
      try {
        process.kill(-(master.pid as number), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    if (rs) await rs.stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
    if (created.cyrusUser) await run('userdel', ['cyrus']);
  }
}

await main();
