// Reproducible generator of test/fixtures/logs/raw/courier/: real Courier-IMAP 5.0.13 / Courier POP3 1.0.16 lines
// (Debian 12) through a private rsyslogd.
//
//   node --import tsx test/helpers/capture-courier.ts [OUTDIR]          (root)
//
// courier-pop / courier-imap conflict with dovecot-pop3d / -imapd, so they need not be installed: install only
// courier-base (authdaemond, userdb tools, couriertcpd, courierlogger; no conflict) and unpack the two packages:
//   apt-get install --no-install-recommends courier-base
//   apt-get download courier-pop courier-imap && for f in courier-*.deb; do dpkg -x $f /tmp/rg-courier-root; done
// and set COURIER_ROOT=/tmp/rg-courier-root (default: / = installed packages). Afterwards
//   apt-get purge courier-base courier-authdaemon courier-authlib courier-authlib-userdb && apt-get autoremove
//
// Private instance: the script runs in its own network namespace (only `lo`; couriertcpd listens on wildcard ports
// there) and mount namespace, where a copy of /etc/courier (authmodulelist="authuserdb", a userdb with the test
// users) and an empty /run/courier are bind-mounted over the real ones: the machine's Courier config is not touched.
// Logging as in Debian's init scripts: couriertcpd ... under `courierlogger -name=pop3d|imapd` (syslog ident).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, mkdir, rm, writeFile, chmod, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startRsyslog, type PrivateRsyslog } from './syslog.ts';
import { run, runOk, pollFor, waitExit } from './proc.ts';
import { probeGreeting } from './clients.ts';
import { ensurePrivateNetns, fileLines, Recorder, runAttempt, today, writeCapture, type Attempt } from './capture-common.ts';

ensurePrivateNetns({ mountNs: true });

const OUT = resolve(process.argv[2] ?? join(import.meta.dirname, '../fixtures/logs/raw/courier'));
const ROOT = process.env.COURIER_ROOT ?? '/';
const PORTS = { imap: 10143, pop3: 10110 };
const PW = { alice: 'alice-pw', bob: 'bob-pw', hostile: 'hostile-pw' };

/** Hostile usernames that also get a userdb entry (valid password), so a successful LOGIN line carries them. */
const HOSTILE = [
  'x, ip=[6.6.6.6], port=[1]',
  'alice, ip=[6.6.6.6]',
  'x>, method=PLAIN, rip=6.6.6.6',
  'a"b\\c',
  'ip=[6.6.6.6]',
];

function attempts(): Attempt[] {
  const a: Attempt[] = [
    { kind: 'pop3-user', src: '127.0.0.7', user: 'alice', pass: PW.alice, valid: true },
    { kind: 'pop3-auth-plain', src: '127.0.0.7', user: 'alice', pass: PW.alice, valid: true },
    { kind: 'imap-login', src: '127.0.0.7', user: 'alice', pass: PW.alice, valid: true },
    { kind: 'imap-authenticate-plain', src: '127.0.0.7', user: 'alice', pass: PW.alice, valid: true },
    { kind: 'pop3-user', src: '::1', user: 'bob', pass: PW.bob, valid: true },
    { kind: 'imap-login', src: '::1', user: 'bob', pass: PW.bob, valid: true },
    { kind: 'pop3-user', src: '127.0.0.8', user: 'alice', pass: 'wrong', valid: false },
    { kind: 'imap-login', src: '127.0.0.8', user: 'alice', pass: 'wrong', valid: false },
    { kind: 'pop3-user', src: '127.0.0.8', user: 'nosuchuser', pass: 'wrong', valid: false },
    { kind: 'pop3-noauth-close', src: '127.0.0.9', valid: false },
    { kind: 'imap-noauth-quit', src: '127.0.0.9', valid: false },
  ];
  let n = 0;
  for (const u of HOSTILE) {
    a.push({ kind: 'imap-login', src: `127.0.2.${++n}`, user: u, pass: PW.hostile, valid: true, note: 'user exists in userdb' });
    a.push({ kind: 'pop3-user', src: `127.0.2.${++n}`, user: u, pass: PW.hostile, valid: true, note: 'user exists in userdb' });
  }
  let m = 0;
  for (const u of [...HOSTILE, 'LOGIN, user=alice, ip=[6.6.6.6], port=[1]', 'v' + 'e'.repeat(310) + 'rylong']) {
    a.push({ kind: 'imap-login', src: `127.0.1.${++m}`, user: u, pass: 'wrong', valid: false });
    a.push({ kind: 'pop3-user', src: `127.0.1.${++m}`, user: u, pass: 'wrong', valid: false });
  }
  a.push({ kind: 'imap-login-literal', src: `127.0.1.${++m}`, user: 'ev\r\nil', pass: 'wrong', valid: false, note: 'CRLF in literal' });
  a.push({ kind: 'pop3-user', src: `127.0.1.${++m}`, user: 'ev\ril', pass: 'wrong', valid: false, note: 'bare CR' });
  return a;
}

async function sh(script: string, input?: string): Promise<string> {
  const r = await runOk('sh', ['-c', script], input !== undefined ? { input } : {});
  return r.stdout;
}

async function main(): Promise<void> {
  if (process.env.RG_PRIVATE_NETNS !== '1') throw new Error('not in the private namespaces');
  const lib = join(ROOT, 'usr/lib/courier');
  for (const f of ['courier/courierpop3login', 'courier/courierpop3d', 'courier/imaplogin', 'imapd']) {
    if (!existsSync(join(lib, f)) && !existsSync(join(ROOT, 'usr/bin/imapd'))) throw new Error(`missing ${join(lib, f)} (see the header)`);
  }
  const imapdBin = existsSync(join(ROOT, 'usr/bin/imapd')) ? join(ROOT, 'usr/bin/imapd') : join(lib, 'imapd');
  const dir = await mkdtemp(join(tmpdir(), 'rg-courier-'));
  const children: ChildProcess[] = [];
  let rs: PrivateRsyslog | undefined;
  const mounted: string[] = [];
  let madeRunCourier = false;
  try {
    await chmod(dir, 0o755);
    // private /etc/courier and /run/courier (this mount namespace only)
    const etc = join(dir, 'etc-courier');
    await sh(`cp -a /etc/courier "${etc}" && rm -rf "${etc}/userdb" "${etc}/userdb.dat" "${etc}/userdbshadow.dat"`);
    let rc = await readFile(join(etc, 'authdaemonrc'), 'utf8');
    rc = rc.replace(/^authmodulelist=.*$/m, 'authmodulelist="authuserdb"').replace(/^authdaemonvar=.*$/m, 'authdaemonvar=/run/courier/authdaemon');
    await writeFile(join(etc, 'authdaemonrc'), rc);
    await sh(`mount --bind "${etc}" /etc/courier`);
    mounted.push('/etc/courier');
    const runDir = join(dir, 'run-courier');
    await mkdir(join(runDir, 'authdaemon'), { recursive: true });
    await sh(`chown -R daemon:daemon "${runDir}/authdaemon" 2>/dev/null || true; chmod 750 "${runDir}/authdaemon"`);
    if (!existsSync('/run/courier')) {
      await mkdir('/run/courier');
      madeRunCourier = true;
    }
    await sh(`mount --bind "${runDir}" /run/courier`);
    mounted.push('/run/courier');
    // mail home shared by all test users (uid/gid nobody)
    const home = join(dir, 'home');
    await mkdir(home);
    await runOk('maildirmake', [join(home, 'Maildir')]);
    await sh(`chown -R 65534:65534 "${home}"`);
    // userdb
    const refused: string[] = [];
    for (const [u, p] of [['alice', PW.alice], ['bob', PW.bob], ...HOSTILE.map((h) => [h, PW.hostile])] as Array<[string, string]>) {
      const hash = (await sh('userdbpw -md5', `${p}\n${p}\n`)).trim();
      const r1 = await run('userdb', [u, 'set', 'uid=65534', 'gid=65534', `home=${home}`, `mail=${home}/Maildir`]);
      const r2 = await run('userdb', [u, 'set', `systempw=${hash}`]);
      if (r1.code !== 0 || r2.code !== 0) refused.push(`${JSON.stringify(u)}: ${(r1.stderr + r2.stderr).trim()}`);
    }
    await runOk('makeuserdb', []);
    for (const r of refused) console.log(`userdb refused ${r}`);

    rs = await startRsyslog({ hostname: 'mx' });
    const rec = new Recorder([rs.traditionalPath, rs.rfc3339Path]);
    const start = (argv: string[], env: Record<string, string>): ChildProcess => {
      const [cmd, ...args] = rs!.wrap(argv);
      const c = spawn(cmd!, args, { stdio: ['ignore', 'inherit', 'inherit'], detached: true, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ...env } });
      children.push(c);
      return c;
    };
    const rcEnv = Object.fromEntries(rc.split('\n').map((l) => /^([A-Za-z_]+)="?(.*?)"?$/.exec(l)).filter((m): m is RegExpExecArray => !!m).map((m) => [m[1]!, m[2]!]));
    start(['courierlogger', '-name=authdaemond', '/usr/lib/courier/courier-authlib/authdaemond'], rcEnv);
    await pollFor(() => (existsSync('/run/courier/authdaemon/socket') ? true : undefined), 10_000);
    const common = { MAILDIRPATH: 'Maildir', TCPLOCALIP: '', SHELL: '/bin/sh' };
    start(
      ['courierlogger', '-name=pop3d', 'couriertcpd', '-address=0', '-maxprocs=40', '-maxperip=40', '-nodnslookup', '-noidentlookup', String(PORTS.pop3),
        join(lib, 'courier/courierpop3login'), join(lib, 'courier/courierpop3d'), 'Maildir'],
      { ...common, POP3AUTH: 'PLAIN LOGIN', POP3AUTH_TLS: '', POP3_PROXY: '0', POP3DSTART: 'YES' },
    );
    start(
      ['courierlogger', '-name=imapd', 'couriertcpd', '-address=0', '-maxprocs=40', '-maxperip=40', '-nodnslookup', '-noidentlookup', String(PORTS.imap),
        join(lib, 'courier/imaplogin'), imapdBin, 'Maildir'],
      {
        ...common,
        IMAP_CAPABILITY: 'IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE AUTH=PLAIN',
        IMAP_KEYWORDS: '1', IMAP_ACL: '1', IMAP_PROXY: '0', IMAP_IDLE_TIMEOUT: '60', IMAP_MAILBOX_SANITY_CHECK: '0', IMAP_UMASK: '022',
        IMAP_ULIMITD: '131072', IMAP_USELOCKS: '1', IMAP_TRASHFOLDERNAME: 'Trash', IMAP_EMPTYTRASH: 'Trash:7', IMAPDSTART: 'YES',
        IMAP_SHAREDINDEXFILE: '/etc/courier/shared/index',
      },
    );
    const up = await pollFor(async () => {
      try {
        await probeGreeting({ host: '127.0.0.1', port: PORTS.pop3, protocol: 'pop3', localAddress: '127.0.0.1', timeoutMs: 2_000 });
        await probeGreeting({ host: '127.0.0.1', port: PORTS.imap, protocol: 'imap', localAddress: '127.0.0.1', timeoutMs: 2_000 });
        return true;
      } catch {
        return undefined;
      }
    }, 15_000, 200);
    if (up !== true) throw new Error(`courier did not come up: ${(await fileLines(rs.traditionalPath)).join('\n')}`);
    await rec.mark({ label: 'startup (authdaemond) and the two readiness probes from 127.0.0.1 (POP3, IMAP: greeting only)' }, true, 6_000);
    for (const a of attempts()) {
      const result = await runAttempt(a, PORTS, undefined, 15_000);
      await rec.mark({ label: a.kind, attempt: a, result }, true, 7_000);
      console.log(`${a.src} ${a.kind} ${JSON.stringify(a.user ?? '').slice(0, 80)} -> ${typeof result === 'string' ? result : result.ok ? 'OK' : 'refused: ' + result.reply}`);
    }
    for (const c of children.reverse()) {
      c.kill('SIGTERM');
      if (!(await waitExit(c, 5_000))) process.kill(-(c.pid as number), 'SIGKILL');
    }
    children.length = 0;
    await sleep(300);
    await rs.stop({ keep: true });
    await rec.mark({ label: 'shutdown' }, false);

    const pkg = (await run('dpkg-deb', ['-f', process.env.COURIER_DEB ?? '/nonexistent', 'Version'])).stdout.trim() || '1.0.16-3+b6';
    const success = /^(?:\S+ +){1,6}?(?:pop3d|imapd): LOGIN, user=/;
    const classify = (line: string, a: Attempt, ok: boolean): string => {
      if (ok && success.test(line)) return `GRANT ${a.src.includes(':') ? a.src : a.src + ' (logged as ::ffff:' + a.src + ')'}`;
      if (ok && /(?:pop3d|imapd): LOGOUT, user=/.test(line)) return 'session end (LOGOUT), no grant';
      return 'no grant';
    };
    for (const [j, name] of ['courier-syslog-traditional.log', 'courier-syslog-rfc3339.log'].entries()) {
      const header = [
        `Program: Courier POP3 (courierpop3login/courierpop3d) and Courier-IMAP 5.0.13 (imaplogin/imapd), Debian 12 packages courier-pop ${pkg} / courier-imap, authdaemond (courier-authlib 0.71.4, authuserdb). Generated by \`test/helpers/capture-courier.ts\` (${today()}).`,
        `Format: private rsyslogd 8.2302 (hostname \`mx\`), template ${j === 0 ? '`RSYSLOG_TraditionalFileFormat`' : '`RSYSLOG_FileFormat` (RFC 3339, Debian 12 default)'}; idents \`pop3d\`, \`imapd\`, \`authdaemond\` (courierlogger -name=..., no pid).`,
        `Config: couriertcpd -address=0 (IPv6 socket: IPv4 clients appear as ::ffff:a.b.c.d) -nodnslookup -noidentlookup, ports ${PORTS.pop3}/${PORTS.imap} in a private network namespace; POP3AUTH="PLAIN LOGIN", IMAP AUTH=PLAIN; userdb users alice, bob and the hostile names ${HOSTILE.map((h) => '`' + h + '`').join(', ')} (password \`${PW.hostile}\`)${refused.length ? '; userdb refused: ' + refused.join('; ') : ''}.`,
        'Clients: raw sockets (test/helpers/clients.ts), one attempt at a time, each hostile one from its own source address.',
        'Expected: only a line marked `GRANT <ip>` is a successful login (`LOGIN, user=<u>, ip=[<ip>], port=[<p>]...`): the IP is the LAST `ip=[...]` before `, port=[`, normalized (strip ::ffff:), never one inside the username. `LOGIN FAILED`, `Connection`, `Disconnected`, `LOGOUT` must not grant.',
      ];
      await writeCapture(OUT, name, await fileLines(rec.paths[j]!), header, rec.segs[j]!, classify);
    }
    await rm(rs.dir, { recursive: true, force: true });
    rs = undefined;
  } finally {
    for (const c of children) {
      try {
        process.kill(-(c.pid as number), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    if (rs) await rs.stop().catch(() => undefined);
    for (const m of mounted.reverse()) await run('umount', ['-l', m]);
    if (madeRunCourier) await rm('/run/courier', { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
