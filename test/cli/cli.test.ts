// The relaygate command end to end: real processes, real LMDB files in a temp directory.
// Covers the README tour, exit statuses (0 permit / 1 reject / 2 defer, 64 usage, 73 store, 78 config),
// hostile arguments, a corrupt data directory, and the daemon starting and stopping on SIGTERM.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, writeFile, rm, mkdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'src/main.ts');
// The CLI runs from temporary directories, so tsx is named by its resolved URL, not looked up from cwd.
const TSX = import.meta.resolve('tsx');
let dir: string;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function relaygate(args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--import', TSX, MAIN, ...args], { cwd: opts.cwd ?? dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
  });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rg-cli-'));
  await writeFile(join(dir, 'relaygate.toml'), 'data_dir = "./data"\nlog_level = "warn"\nmydestination = ["example.com"]\n');
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('the README tour: add a grant, check permits it, an unknown client is refused', async () => {
  const add = await relaygate(['map', 'add', '192.0.2.7', '--user', 'alice']);
  assert.equal(add.code, 0, add.stderr);
  assert.match(add.stdout, /^192\.0\.2\.7: granted to alice until \d{4}-\d\d-\d\dT/);

  const ok = await relaygate(['check', '--client', '192.0.2.7', '--rcpt', 'bob@remote.example']);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /RCPT: PERMIT by permit_pop_before_smtp/);
  assert.match(ok.stdout, /permit_pop_before_smtp\s+OK/);
  assert.match(ok.stdout, /result: permit$/m);

  const no = await relaygate(['check', '--client', '198.51.100.9', '--rcpt', 'bob@remote.example', '--sender', 'eve@remote.example']);
  assert.equal(no.code, 1, no.stdout + no.stderr);
  assert.match(no.stdout, /REJECT by reject_unauth_destination — 554 5\.7\.1 <bob@remote\.example>: Relay access denied/);
  assert.match(no.stdout, /log: NOQUEUE: reject: RCPT from unknown\[198\.51\.100\.9\]: 554 5\.7\.1 <bob@remote\.example>: Relay access denied; from=<eve@remote\.example> to=<bob@remote\.example> proto=ESMTP helo=<unknown>/);

  const local = await relaygate(['check', '--client', '198.51.100.9', '--rcpt', 'postmaster@example.com', '--json']);
  assert.equal(local.code, 0, local.stdout + local.stderr);
  assert.equal(JSON.parse(local.stdout).result, 'permit');
});

test('map query / list / del / stats, text and JSON', async () => {
  assert.equal((await relaygate(['map', 'add', '2001:DB8:0:0::7', '--user', 'carol', '--ttl', '10m'])).code, 0);
  const q = await relaygate(['map', 'query', '2001:db8::7', '--json']);
  assert.equal(q.code, 0, q.stderr);
  const g = JSON.parse(q.stdout);
  assert.equal(g.ip, '2001:db8::7');
  assert.equal(g.user, 'carol');
  assert.equal(g.source, 'cli');
  const ttl = Date.parse(g.expires) - Date.parse(g.lastSeen);
  assert.ok(ttl >= 599_000 && ttl <= 600_000, `ttl ${ttl}`);

  const list = await relaygate(['map', 'list', '--json']);
  assert.ok(JSON.parse(list.stdout).some((x: { ip: string }) => x.ip === '2001:db8::7'));
  const text = await relaygate(['map', 'list']);
  assert.match(text.stdout, /^ip\s+user\s+service\s+source\s+expires\s+count$/m);
  assert.match(text.stdout, /^2001:db8::7\s+carol\s+-\s+cli\s/m);

  const stats = await relaygate(['map', 'stats', '--json']);
  assert.ok(JSON.parse(stats.stdout).active >= 1);

  assert.equal((await relaygate(['map', 'del', '2001:db8::7'])).code, 0);
  const gone = await relaygate(['map', 'query', '2001:db8::7']);
  assert.equal(gone.code, 1);
  assert.match(gone.stdout, /no grant/);
  assert.equal((await relaygate(['map', 'del', '2001:db8::7'])).code, 1, 'deleting a missing grant reports it');
});

test('an IPv4-mapped address is the IPv4 client', async () => {
  assert.equal((await relaygate(['map', 'add', '::ffff:192.0.2.8', '--user', 'dave'])).code, 0);
  const q = await relaygate(['map', 'query', '192.0.2.8', '--json']);
  assert.equal(q.code, 0);
  assert.equal(JSON.parse(q.stdout).user, 'dave');
  const c = await relaygate(['check', '--client', '::FFFF:192.0.2.8', '--rcpt', 'x@remote.example']);
  assert.equal(c.code, 0, c.stdout);
});

test('mynetworks and never_authorize addresses are not recorded', async () => {
  for (const ip of ['127.0.0.5', '::1', '224.0.0.1']) {
    const r = await relaygate(['map', 'add', ip]);
    assert.equal(r.code, 1, ip);
    assert.match(r.stdout, /not recorded \((mynetworks|never_authorize)\)/, ip);
  }
});

for (const bad of ['unknown', 'fe80::1%eth0', '', 'mail.example.com', '999.1.1.1', '010.0.0.1', '192.0.2.7 ', '[::1]']) {
  test(`hostile client argument ${JSON.stringify(bad)} is a usage error (64), nothing recorded`, async () => {
    const check = await relaygate(['check', '--client', bad, '--rcpt', 'x@remote.example']);
    assert.equal(check.code, 64, check.stdout + check.stderr);
    assert.match(check.stderr, /RG_ERR_BAD_ADDRESS: invalid client IP/);
    const add = await relaygate(['map', 'add', bad]);
    assert.equal(add.code, 64);
    assert.match(add.stderr, /fix: Give a literal IPv4 or IPv6 address/);
  });
}

test('bad CLI arguments: missing options, bad ttl, unknown command', async () => {
  const missing = await relaygate(['check', '--client', '192.0.2.1']);
  assert.equal(missing.code, 64);
  assert.match(missing.stderr, /required option '--rcpt <address>'/);
  const ttl = await relaygate(['map', 'add', '192.0.2.1', '--ttl', 'forever']);
  assert.equal(ttl.code, 64);
  assert.match(ttl.stderr, /RG_ERR_USAGE: invalid --ttl/);
  const unknown = await relaygate(['frobnicate']);
  assert.equal(unknown.code, 64);
});

test('--help works for every command', async () => {
  for (const args of [[], ['run'], ['check'], ['map'], ['map', 'list'], ['map', 'query'], ['map', 'add'], ['map', 'del'], ['map', 'stats'], ['config'], ['config', 'check'], ['config', 'show'], ['test-log']]) {
    const r = await relaygate([...args, '--help']);
    assert.equal(r.code, 0, args.join(' '));
    assert.match(r.stdout, /^Usage: relaygate/m, args.join(' '));
  }
});

test('config check: ok, or every problem and exit 78; config show like postconf -n', async () => {
  const ok = await relaygate(['config', 'check']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /relaygate\.toml: ok/);
  const bad = join(dir, 'bad.toml');
  await writeFile(bad, 'grace = "x"\nrelay_restrictions = ["permit_all"]\nbogus = 1\n');
  const r = await relaygate(['config', 'check', bad]);
  assert.equal(r.code, 78);
  assert.match(r.stderr, /RG_ERR_CONFIG_INVALID/);
  assert.match(r.stderr, /grace \(line 1\)/);
  assert.match(r.stderr, /bogus \(line 3\): unknown key/);
  const show = await relaygate(['config', 'show']);
  assert.equal(show.stdout, 'data_dir = "./data"\nmydestination = ["example.com"]\nlog_level = "warn"\n');
});

test('a corrupt or unusable data directory is a clear RG_ERR_STORE_OPEN (exit 73), never an empty map', async () => {
  const cdir = await mkdtemp(join(tmpdir(), 'rg-corrupt-'));
  try {
    await mkdir(join(cdir, 'data/map'), { recursive: true });
    await writeFile(join(cdir, 'data/map/data.mdb'), Buffer.alloc(64 * 1024, 0x5a));
    await writeFile(join(cdir, 'relaygate.toml'), 'data_dir = "./data"\n');
    for (const args of [['map', 'list'], ['check', '--client', '192.0.2.1', '--rcpt', 'a@b.example'], ['run']]) {
      const r = await relaygate(args, { cwd: cdir });
      assert.equal(r.code, 73, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /RG_ERR_STORE_OPEN/);
    }
    // data_dir that is a regular file
    await writeFile(join(cdir, 'file'), 'x');
    await writeFile(join(cdir, 'relaygate.toml'), 'data_dir = "./file"\n');
    const r = await relaygate(['map', 'list'], { cwd: cdir });
    assert.equal(r.code, 73, r.stderr);
    assert.match(r.stderr, /RG_ERR_STORE_OPEN/);
  } finally {
    await rm(cdir, { recursive: true, force: true });
  }
});

test('run: starts on the config, logs what it does, stops on SIGTERM with exit 0, grants survive', async () => {
  const rdir = await mkdtemp(join(tmpdir(), 'rg-run-'));
  try {
    await writeFile(join(rdir, 'relaygate.toml'), 'data_dir = "./data"\nsweep_interval = "1s"\n');
    assert.equal((await relaygate(['map', 'add', '192.0.2.9', '--user', 'erin'], { cwd: rdir })).code, 0);
    const child = spawn(process.execPath, ['--import', TSX, MAIN, 'run'], { cwd: rdir, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    const started = await new Promise<boolean>((res) => {
      const t = setTimeout(() => res(false), 20_000);
      child.stdout.on('data', () => {
        if (out.includes('"event":"components"')) {
          clearTimeout(t);
          res(true);
        }
      });
    });
    assert.ok(started, `daemon did not start: ${out}`);
    const start = out.split('\n').map((l) => (l ? JSON.parse(l) : null)).find((l) => l?.event === 'start');
    assert.equal(start.grants, 1);
    assert.match(start.msg, /relaygate started: access map lmdb:.*data\/map with 1 active grant/);
    const code = await new Promise<number | null>((res) => {
      child.on('close', res);
      child.kill('SIGTERM');
    });
    assert.equal(code, 0, out);
    assert.match(out, /"event":"stopped"/);
    const q = await relaygate(['map', 'query', '192.0.2.9', '--json'], { cwd: rdir });
    assert.equal(JSON.parse(q.stdout).user, 'erin');
  } finally {
    await rm(rdir, { recursive: true, force: true });
  }
});

test('run refuses an invalid configuration with exit 78 and starts nothing', async () => {
  const bad = join(dir, 'bad-run.toml');
  await writeFile(bad, 'relay_restrictions = ["permit"]\n');
  const r = await relaygate(['run', '-c', bad]);
  assert.equal(r.code, 78, r.stderr);
  assert.match(r.stderr, /RG_ERR_CONFIG_INVALID/);
});

test('the installed binary entry point runs', async () => {
  const r = await new Promise<Run>((res) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/relaygate.js'), '--version'], { cwd: dir });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.on('close', (code) => res({ code, stdout, stderr: '' }));
  });
  assert.equal(r.code, 0);
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  assert.equal(r.stdout.trim(), pkg.version, 'src/version.ts is kept in step with package.json');
});
