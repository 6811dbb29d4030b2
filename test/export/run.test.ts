// `relaygate run` with [export], as a real child process, without Postfix (postmap only):
//   - postmap missing / not executable → exit 69, RG_ERR_POSTMAP naming the path and the fix, no table written;
//   - `relaygate config check` lists [export] mistakes with their lines (exit 78);
//   - a login line becomes a table entry; `relaygate map del` from another process removes it at the next
//     sweep (reconcile); SIGTERM leaves the table as last written.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pollFor } from '../helpers/proc.ts';
import { Daemon, relaygate } from '../helpers/daemon.ts';
import { makeConfigDir, query, requirePostmap } from './postfix-tables.ts';

let dir = '';
let cfgDir = '';
const daemons: Daemon[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rg-export-run-'));
  cfgDir = await makeConfigDir(dir);
  await requirePostmap(cfgDir, ['lmdb']);
});
after(async () => {
  for (const d of daemons) await d.stop();
  await rm(dir, { recursive: true, force: true });
});

const iso = (ms: number) => new Date(ms).toISOString().replace('Z', '+00:00');

async function writeConfig(name: string, exportLines: string[], extra: string[] = []): Promise<string> {
  const sub = join(dir, name);
  await mkdir(join(sub, 'tables'), { recursive: true });
  const file = join(sub, 'relaygate.toml');
  await writeFile(file, [`data_dir = "${join(sub, 'data')}"`, ...extra, '', '[export]', ...exportLines, ''].join('\n'));
  return file;
}

test('postmap missing or not executable: relaygate run exits 69 with RG_ERR_POSTMAP and writes no table', async () => {
  const notExec = join(dir, 'postmap.txt');
  await writeFile(notExec, 'not a program\n', { mode: 0o644 });
  for (const [name, postmap, why] of [
    ['missing', join(dir, 'nowhere', 'postmap'), /does not exist/],
    ['noexec', notExec, /is not executable/],
  ] as const) {
    const cfg = await writeConfig(name, [`table = "lmdb:${join(dir, name, 'tables', 'pbs')}"`, `postmap = "${postmap}"`, `config_directory = "${cfgDir}"`]);
    const r = await relaygate(['run', '-c', cfg], dir);
    assert.equal(r.code, 69, r.stderr);
    assert.match(r.stderr, /RG_ERR_POSTMAP/);
    assert.match(r.stderr, why);
    assert.match(r.stderr, /install Postfix/);
    assert.deepEqual(await readdir(join(dir, name, 'tables')), []);
  }
});

test('config check lists [export] mistakes with their lines and exits 78', async () => {
  const cfg = await writeConfig('bad', ['table = "texthash:/etc/postfix/pbs"', 'value = "expiry"', 'config_directory = "relative"']);
  const r = await relaygate(['config', 'check', '-c', cfg], dir);
  assert.equal(r.code, 78, r.stdout + r.stderr);
  assert.match(r.stderr, /export\.table \(line \d+\): .*cannot be exported with postmap; use one of lmdb, hash, btree, cdb/);
  assert.match(r.stderr, /export\.config_directory \(line \d+\): .*must be an absolute path/);
});

test('the daemon exports a login, follows `relaygate map del` from another process, and leaves the table on SIGTERM', async () => {
  const tableDir = join(dir, 'live', 'tables');
  const table = `lmdb:${join(tableDir, 'pbs')}`;
  const log = join(dir, 'live.log');
  await writeFile(log, '');
  const cfg = await writeConfig('live', [`table = "${table}"`, `config_directory = "${cfgDir}"`], [
    'grace = "10m"',
    'sweep_interval = "1s"',
    '',
    '[[watch]]',
    `path = "${log}"`,
    'format = "dovecot"',
    'prefix = "rfc3339"',
  ]);
  const d = await Daemon.start(cfg, dir);
  daemons.push(d);
  assert.ok(d.events().some((e) => e.event === 'export_started' && e.table === table));
  for (const ip of ['192.0.2.5', '192.0.2.6']) {
    await appendFile(log, `${iso(Date.now())} mx dovecot: imap-login: Login: user=<carol>, method=PLAIN, rip=${ip}, lip=192.0.2.1, mpid=1, session=<Zz${ip.slice(-1)}>\n`);
  }
  const seen = await pollFor(async () => ((await query(table, '192.0.2.6', cfgDir)) === 'OK' ? true : undefined), 5000, 25);
  assert.equal(seen, true, 'the login became a table entry');
  const del = await relaygate(['map', 'del', '192.0.2.5', '-c', cfg], dir);
  assert.equal(del.code, 0, del.stderr);
  const gone = await pollFor(async () => ((await query(table, '192.0.2.5', cfgDir)) === undefined ? true : undefined), 5000, 50);
  assert.equal(gone, true, 'removed at the next sweep (reconcile)');
  assert.ok(d.events().some((e) => e.event === 'export_reconciled' && e.removed === 1));
  assert.equal(await d.stop(), 0);
  assert.equal(await query(table, '192.0.2.6', cfgDir), 'OK', 'SIGTERM leaves the table as last written');
  assert.ok(!(await readdir(tableDir)).some((f) => f.includes('rgtmp')));
});
