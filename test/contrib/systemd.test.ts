// contrib/systemd/relaygate.service: systemd itself checks the unit (systemd-analyze verify, and the offline
// security audit with an exposure ceiling, so a weakened unit fails here), and the capability it grants is
// proven to be enough: relaygate as an unprivileged user binds a port below 1024 with CAP_NET_BIND_SERVICE
// as an ambient capability (what AmbientCapabilities= gives), and without it fails with an error that names
// the capability.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { run, pollFor, waitExit } from '../helpers/proc.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const UNIT = join(ROOT, 'contrib/systemd/relaygate.service');
const TSX = import.meta.resolve('tsx');
const MAIN = join(ROOT, 'src/main.ts');
const isRoot = process.getuid?.() === 0;

/** The directives of the [Service] section, last value wins, as systemd reads them (lists kept whole). */
function serviceSettings(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const sec = /^\[(.+)\]$/.exec(line);
    if (sec) {
      section = sec[1]!;
      continue;
    }
    if (section !== 'Service') continue;
    const eq = line.indexOf('=');
    const k = line.slice(0, eq);
    out.set(k, [...(out.get(k) ?? []), line.slice(eq + 1)]);
  }
  return out;
}

describe('systemd unit', () => {
  let dir: string;
  let unitCopy: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rg-unit-'));
    // verify checks that ExecStart's binary exists: point it at this checkout's bin, nothing else changes.
    const text = await readFile(UNIT, 'utf8');
    assert.match(text, /^ExecStart=\/usr\/bin\/relaygate run -c \/etc\/relaygate\/relaygate\.toml$/m);
    unitCopy = join(dir, 'relaygate.service');
    await writeFile(unitCopy, text.replace('ExecStart=/usr/bin/relaygate', `ExecStart=${join(ROOT, 'bin/relaygate.js')}`));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('systemd-analyze verify accepts it', async () => {
    const r = await run('systemd-analyze', ['verify', unitCopy], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, `systemd-analyze verify: ${r.stdout}${r.stderr}`);
    assert.doesNotMatch(r.stderr, /relaygate\.service:\d+: /, 'no warning about a line of the unit');
  });

  test('the offline security audit rates it OK or better (exposure <= 2.0)', async () => {
    const r = await run('systemd-analyze', ['security', '--offline=true', '--no-pager', unitCopy], { timeoutMs: 30_000 });
    const m = /Overall exposure level for relaygate\.service: (\d+(?:\.\d+)?)/.exec(r.stdout + r.stderr);
    assert.ok(m, `no exposure level in: ${r.stdout.slice(-500)}${r.stderr.slice(-500)}`);
    assert.ok(Number(m[1]) <= 2.0, `exposure ${m[1]} > 2.0`);
  });

  test('own user, adm for logs, only CAP_NET_BIND_SERVICE, read-only system but the data dir', async () => {
    const s = serviceSettings(await readFile(UNIT, 'utf8'));
    const one = (k: string) => s.get(k)?.at(-1);
    assert.equal(one('User'), 'relaygate');
    assert.equal(one('NoNewPrivileges'), 'yes');
    assert.equal(one('ProtectSystem'), 'strict');
    assert.equal(one('StateDirectory'), 'relaygate');
    assert.equal(one('AmbientCapabilities'), 'CAP_NET_BIND_SERVICE');
    assert.equal(one('CapabilityBoundingSet'), 'CAP_NET_BIND_SERVICE');
    assert.ok(one('SupplementaryGroups')?.split(/\s+/).includes('adm'));
    assert.equal(s.has('ReadWritePaths'), false, 'no writable path beyond StateDirectory/RuntimeDirectory');
    assert.equal(one('ExecReload'), '/bin/kill -HUP $MAINPID');
    assert.equal(one('RestartPreventExitStatus'), '78');
  });
});

/** A port below 1024 that nothing listens on, on 127.0.0.1 (tried by binding it as root). */
async function freeLowPort(): Promise<number> {
  for (let p = 700; p < 1024; p++) {
    const ok = await new Promise<boolean>((res) => {
      const s = net.createServer();
      s.once('error', () => res(false));
      s.listen(p, '127.0.0.1', () => s.close(() => res(true)));
    });
    if (ok) return p;
  }
  throw new Error('no free port below 1024 on 127.0.0.1');
}

describe('CAP_NET_BIND_SERVICE', { skip: isRoot ? false : 'needs root to drop to an unprivileged user with setpriv' }, () => {
  let dir: string;
  let conf: string;
  let port: number;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rg-cap-'));
    await chmod(dir, 0o755);
    await chown(dir, 65534, 65534);
    port = await freeLowPort();
    conf = join(dir, 'relaygate.toml');
    await writeFile(conf, [`data_dir = "${dir}"`, '[[listen]]', `address = "127.0.0.1:${port}"`, 'role = "smtp"', '[smtp]', 'relayhost = "127.0.0.1:9"', ''].join('\n'));
    await chmod(conf, 0o644);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const asNobody = (caps: boolean): string[] => [
    '--reuid=nobody', '--regid=nogroup', '--clear-groups',
    ...(caps ? ['--inh-caps=+net_bind_service', '--ambient-caps=+net_bind_service'] : []),
    process.execPath, '--import', TSX, MAIN, 'run', '-c', conf,
  ];

  test('without the capability: exit 78 and the error names CAP_NET_BIND_SERVICE', async () => {
    const r = await run('setpriv', asNobody(false), { timeoutMs: 30_000 });
    assert.equal(r.code, 78, r.stderr);
    assert.match(r.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}`));
    assert.match(r.stderr, /CAP_NET_BIND_SERVICE/);
  });

  test('with it as an ambient capability: an unprivileged relaygate greets on the low port', async () => {
    const child = spawn('setpriv', asNobody(true), { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout.resume();
    try {
      const greeting = await pollFor(
        () =>
          new Promise<string | undefined>((res) => {
            const s = net.connect(port, '127.0.0.1');
            s.setTimeout(1000, () => s.destroy());
            s.once('data', (d) => {
              res(d.toString());
              s.destroy();
            });
            s.once('error', () => res(undefined));
            s.once('close', () => res(undefined));
          }),
        20_000,
        200,
      );
      assert.ok(greeting, `no greeting on ${port}: ${err}`);
      assert.match(greeting, /^220 /);
      // setpriv execs relaygate in place: this pid is the daemon, running as nobody
      const uid = /^Uid:\s+(\d+)/m.exec(await readFile(`/proc/${child.pid}/status`, 'utf8'))?.[1];
      assert.equal(uid, '65534');
    } finally {
      child.kill('SIGTERM');
      assert.ok(await waitExit(child, 15_000), 'relaygate stops on SIGTERM');
    }
    assert.equal(child.exitCode, 0, err);
  });
});
