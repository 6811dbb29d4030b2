// The table exporter against Postfix's real postmap and a real LMDB access map (in process): adds appear,
// values OK vs expiry, expiry deletes (manual clock and real timers), restart rebuild, out-of-process changes
// reconciled at the sweep, a replaced table file rebuilt, hash/btree/cdb, hostile input, failures retried
// with no add lost, one postmap at a time, postmap missing.
//
// Only two tests put something between the exporter and postmap: a shell shim that execs the real
// /usr/sbin/postmap, made to fail on demand (a failing postmap cannot be produced otherwise) or to record
// overlapping runs (the serialization check). Everything is read back with `postmap -q` / `postmap -s`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, mkdir, readdir, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { openAccessMap, type AccessMap, type LoginEvent } from '../../src/store/index.ts';
import { CidrSet } from '../../src/net/index.ts';
import { manualClock, systemClock, type Clock } from '../../src/clock.ts';
import { silentLogger } from '../../src/log/logger.ts';
import { isRelaygateError } from '../../src/errors.ts';
import { observeAccessMap, parseTableSpec, resolvePostmap, startTableExport, TableExporter, type ExportValue, type TableSpec } from '../../src/export/index.ts';
import { captureLogger } from '../store/contract.ts';
import { pollFor, run } from '../helpers/proc.ts';
import { dump, makeConfigDir, POSTMAP, query, requirePostmap } from './postfix-tables.ts';

let root = '';
let cfgDir = '';
let n = 0;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'rg-export-'));
  cfgDir = await makeConfigDir(root);
  await requirePostmap(cfgDir);
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

interface Rig {
  readonly dir: string;
  readonly spec: TableSpec;
  readonly raw: AccessMap;
  readonly map: AccessMap;
  readonly exporter: TableExporter;
  readonly lines: Array<Record<string, unknown>>;
  close(): Promise<void>;
}

interface RigOptions {
  type?: string;
  value?: ExportValue;
  clock?: Clock;
  postmap?: string;
  /** reuse this directory (a restart) */
  dir?: string;
  retryMinMs?: number;
  batchDelayMs?: number;
  start?: boolean;
}

async function rig(o: RigOptions = {}): Promise<Rig> {
  const dir = o.dir ?? join(root, `t${++n}`);
  await mkdir(dir, { recursive: true });
  const clock = o.clock ?? systemClock;
  const { logger, lines } = captureLogger();
  const raw = await openAccessMap({ type: 'lmdb', path: join(dir, 'map'), grace: 1800, mynetworks: new CidrSet(['127.0.0.0/8']), neverAuthorize: new CidrSet(['0.0.0.0/8']), clock, logger, verify: false });
  const spec = parseTableSpec(`${o.type ?? 'lmdb'}:${dir}/pbs`);
  assert.ok(typeof spec !== 'string', String(spec));
  const exporter = new TableExporter({ table: spec, value: o.value ?? 'OK', postmap: o.postmap ?? POSTMAP, configDirectory: cfgDir, map: raw, clock, logger, retryMinMs: o.retryMinMs ?? 50, batchDelayMs: o.batchDelayMs });
  if (o.start !== false) await exporter.start();
  const map = observeAccessMap(raw, { noteGrant: (g) => exporter.noteGrant(g), noteDelete: (ip) => exporter.noteDelete(ip), noteSweep: () => void exporter.reconcile() }, logger);
  return {
    dir,
    spec,
    raw,
    map,
    exporter,
    lines: lines as unknown as Array<Record<string, unknown>>,
    async close() {
      await exporter.stop();
      await raw.close();
    },
  };
}

const login = (ip: string, extra: Partial<LoginEvent> = {}): LoginEvent => ({ ip, user: 'alice', service: 'pop3', source: 'test', ...extra });

/** Polls `postmap -q` until the key has `want` (a value, or undefined = absent); bounded. */
async function until(table: string, key: string, want: string | undefined, ms = 3000): Promise<void> {
  const got = await pollFor(async () => ((await query(table, key, cfgDir)) === want ? true : undefined), ms, 20);
  assert.equal(got, true, `${table}: ${key} should be ${want ?? 'absent'} within ${ms} ms (is ${await query(table, key, cfgDir)})`);
}

test('a recorded grant appears in the lmdb table within one batch, value OK; refusals never do', async () => {
  const r = await rig();
  try {
    assert.deepEqual(await dump(r.spec.text, cfgDir), new Map(), 'start-up builds an empty table (Postfix needs the file to exist)');
    const started = Date.now();
    await r.map.recordMany([login('192.0.2.10'), login('127.0.0.9'), login('0.0.0.1'), login('2001:db8::10')]);
    await until(r.spec.text, '192.0.2.10', 'OK');
    const took = Date.now() - started;
    assert.equal(await query(r.spec.text, '2001:db8::10', cfgDir), 'OK');
    // mynetworks and never_authorize refusals are not grants, so not table entries
    assert.deepEqual([...(await dump(r.spec.text, cfgDir)).keys()].sort(), ['192.0.2.10', '2001:db8::10']);
    const s = r.exporter.stats();
    assert.equal(s.pending, 0);
    assert.ok(s.batches >= 1 && s.added === 2, JSON.stringify(s));
    assert.ok(took < 5000, `bounded: ${took} ms`); // the latency figure itself is in bench/export.ts, not asserted here
  } finally {
    await r.close();
  }
});

test('value = "expiry" writes the expiry as Unix seconds and follows a refresh (sliding)', async () => {
  const clock = manualClock(Date.UTC(2030, 0, 1, 12, 0, 0));
  const r = await rig({ clock, value: 'expiry' });
  try {
    await r.map.record(login('192.0.2.20'));
    await r.exporter.flush();
    const first = Date.UTC(2030, 0, 1, 12, 30, 0) / 1000;
    assert.equal(await query(r.spec.text, '192.0.2.20', cfgDir), String(first));
    clock.advance(600_000);
    await r.map.record(login('192.0.2.20'));
    await r.exporter.flush();
    assert.equal(await query(r.spec.text, '192.0.2.20', cfgDir), String(first + 600), 'the refresh moved the expiry');
    // the old expiry passes: the refreshed grant stays
    clock.advance(1800_000 - 600_000 + 1000);
    assert.equal(r.exporter.expireDue(), 0);
    await r.exporter.flush();
    assert.equal(await query(r.spec.text, '192.0.2.20', cfgDir), String(first + 600));
  } finally {
    await r.close();
  }
});

test('expiry deletes: at the grant expiry (manual clock), and by the exporter timer on its own (real clock)', async () => {
  const clock = manualClock(Date.UTC(2030, 0, 1, 12, 0, 0));
  const r = await rig({ clock });
  try {
    await r.map.recordMany([login('192.0.2.30'), login('192.0.2.31', { ttl: 60 })]);
    await r.exporter.flush();
    assert.equal(await query(r.spec.text, '192.0.2.31', cfgDir), 'OK');
    clock.advance(59_999);
    assert.equal(r.exporter.expireDue(), 0, 'not before its expiry');
    clock.advance(1);
    assert.equal(r.exporter.expireDue(), 1);
    await r.exporter.flush();
    assert.equal(await query(r.spec.text, '192.0.2.31', cfgDir), undefined);
    assert.equal(await query(r.spec.text, '192.0.2.30', cfgDir), 'OK');
  } finally {
    await r.close();
  }
  const real = await rig();
  try {
    await real.map.record(login('192.0.2.32', { ttl: 1 }));
    await until(real.spec.text, '192.0.2.32', 'OK');
    await until(real.spec.text, '192.0.2.32', undefined, 4000); // no flush, no expireDue: timers only
    assert.ok(real.lines.some((l) => l.event === 'export_batch' && l.deleted === 1), 'the delete went out as a batch');
  } finally {
    await real.close();
  }
});

test('restart: the table is rebuilt from the map into a new file; grants that expired while stopped and foreign entries are gone', async () => {
  const clock = manualClock(Date.UTC(2030, 0, 1, 12, 0, 0));
  const first = await rig({ clock });
  const dir = first.dir;
  await first.map.recordMany([login('192.0.2.40', { ttl: 60 }), login('192.0.2.41'), login('2001:db8::41')]);
  await first.close();
  const text = first.spec.text;
  assert.equal(await query(text, '192.0.2.40', cfgDir), 'OK', 'stopped: the table stays as last written');
  // drift while stopped: someone adds an entry by hand; a crash left a temporary file behind
  await run(POSTMAP, ['-c', cfgDir, '-i', text], { input: '203.0.113.99 OK\n' });
  await writeFile(join(dir, '.pbs.rgtmp-999999-1'), '198.51.100.1 OK\n');
  await writeFile(join(dir, '.pbs.rgtmp-999999-1.lmdb'), 'junk');
  const inodeBefore = (await stat(join(dir, 'pbs.lmdb'))).ino;
  clock.advance(61_000);

  const second = await rig({ clock, dir });
  try {
    const entries = await dump(text, cfgDir);
    assert.deepEqual([...entries.keys()].sort(), ['192.0.2.41', '2001:db8::41']);
    assert.notEqual((await stat(join(dir, 'pbs.lmdb'))).ino, inodeBefore, 'renamed into place, not rewritten in place');
    assert.deepEqual((await readdir(dir)).filter((f) => f.includes('rgtmp')), [], 'temporary files cleaned up');
    assert.ok(second.lines.some((l) => l.event === 'export_rebuilt' && l.entries === 2));
  } finally {
    await second.close();
  }
});

test('the rebuilt file keeps the old mode (Postfix must still read it); a first table is 0644', async () => {
  const r = await rig();
  const file = join(r.dir, 'pbs.lmdb');
  try {
    assert.equal((await stat(file)).mode & 0o777, 0o644);
  } finally {
    await r.close();
  }
  await chmod(file, 0o640);
  const again = await rig({ dir: r.dir });
  try {
    assert.equal((await stat(file)).mode & 0o777, 0o640);
  } finally {
    await again.close();
  }
});

/** The value of each candidate key by `postmap -q` (cdb has no `postmap -s`); absent keys are left out. */
async function lookupAll(table: string, keys: readonly string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const k of keys) {
    const v = await query(table, k, cfgDir);
    if (v !== undefined) out.set(k, v);
  }
  return out;
}

test('hash, btree and cdb tables: adds, expiry deletes and deletes (cdb rebuilds per batch)', async () => {
  const keys = ['192.0.2.50', '192.0.2.51', '2001:db8::50'];
  for (const type of ['hash', 'btree', 'cdb']) {
    const clock = manualClock(Date.UTC(2030, 0, 1, 12, 0, 0));
    const r = await rig({ type, clock });
    try {
      await r.map.recordMany([login('192.0.2.50'), login('192.0.2.51', { ttl: 60 }), login('2001:db8::50')]);
      await r.exporter.flush();
      assert.deepEqual(await lookupAll(r.spec.text, keys), new Map([['192.0.2.50', 'OK'], ['192.0.2.51', 'OK'], ['2001:db8::50', 'OK']]), type);
      clock.advance(61_000);
      r.exporter.expireDue();
      await r.map.delete('2001:db8::50');
      await r.exporter.flush();
      assert.deepEqual(await lookupAll(r.spec.text, keys), new Map([['192.0.2.50', 'OK']]), type);
      const s = r.exporter.stats();
      if (type === 'cdb') assert.ok(s.rebuilds >= 3, `cdb: every batch is a rebuild (${JSON.stringify(s)})`);
      else assert.equal(s.rebuilds, 1, `${type}: only the start-up rebuild`);
    } finally {
      await r.close();
    }
  }
});

test('hostile input: only normalized client IPs become keys; users, spaces and newlines never reach postmap', async () => {
  const r = await rig();
  try {
    await r.map.recordMany([
      login('192.0.2.60', { user: 'evil\n0.0.0.0/0 OK' }),
      login('192.0.2.61', { user: 'x 203.0.113.1 OK', service: 'imap\nrip=6.6.6.6' }),
      login('::ffff:192.0.2.62'),
      login('2001:DB8:0:0:0:0:0:63'),
      login('::102:304'),
      login('unknown'),
      login('1.2.3.4 OK\n5.6.7.8'),
      login('203.0.113.7\tOK'),
      login('fe80::1%eth0'),
    ]);
    // A grant with a bad address can only come from a buggy writer; it is refused before postmap either way.
    r.exporter.noteGrant({ ip: '198.51.100.1\n0.0.0.0', user: null, service: null, source: 'x', firstSeen: Date.now(), lastSeen: Date.now(), expires: Date.now() + 60_000, count: 1 });
    await r.exporter.flush();
    const entries = await dump(r.spec.text, cfgDir);
    assert.deepEqual([...entries.keys()].sort(), ['192.0.2.60', '192.0.2.61', '192.0.2.62', '2001:db8::63', '::1.2.3.4']);
    assert.ok([...entries.values()].every((v) => v === 'OK'));
    assert.ok(r.lines.some((l) => l.event === 'export_bad_key'), 'the bad grant was logged');
  } finally {
    await r.close();
  }
});

test('out-of-process changes (CLI map add/del on the same store) are reconciled at the next sweep', async () => {
  const r = await rig();
  try {
    await r.map.record(login('192.0.2.70'));
    await until(r.spec.text, '192.0.2.70', 'OK');
    // straight into the store, as `relaygate map del` / `map add` in another process do
    await r.raw.delete('192.0.2.70');
    await r.raw.record(login('192.0.2.71'));
    await r.exporter.flush();
    assert.equal(await query(r.spec.text, '192.0.2.70', cfgDir), 'OK', 'not seen yet');
    await r.map.sweep();
    await until(r.spec.text, '192.0.2.70', undefined);
    await until(r.spec.text, '192.0.2.71', 'OK');
    assert.ok(r.lines.some((l) => l.event === 'export_reconciled' && l.added === 1 && l.removed === 1));
  } finally {
    await r.close();
  }
});

test('a table file removed or replaced behind relaygate is rebuilt whole at the next batch', async () => {
  const r = await rig();
  try {
    await r.map.recordMany([login('192.0.2.80'), login('192.0.2.81')]);
    await r.exporter.flush();
    await unlink(r.spec.file);
    await r.map.record(login('192.0.2.82'));
    await r.exporter.flush();
    assert.deepEqual([...(await dump(r.spec.text, cfgDir)).keys()].sort(), ['192.0.2.80', '192.0.2.81', '192.0.2.82']);
    assert.ok(r.lines.some((l) => l.event === 'export_table_replaced'));
  } finally {
    await r.close();
  }
});

test('postmap failures are logged and retried with back-off; no add or delete is lost', async () => {
  const flag = join(root, 'postmap-down');
  const shim = join(root, 'postmap-flaky');
  await writeFile(shim, `#!/bin/sh\nif [ -e '${flag}' ]; then echo "postmap: fatal: simulated outage" >&2; exit 1; fi\nexec ${POSTMAP} "$@"\n`, { mode: 0o755 });
  const clock = manualClock(Date.now());
  const r = await rig({ postmap: shim, clock, retryMinMs: 40 });
  try {
    await r.map.record(login('192.0.2.90', { ttl: 60 }));
    await r.exporter.flush();
    await writeFile(flag, '');
    await r.map.recordMany([login('192.0.2.91'), login('192.0.2.92'), login('2001:db8::93')]);
    clock.advance(61_000);
    r.exporter.expireDue(); // 192.0.2.90's delete also waits for postmap
    const failed = await pollFor(() => (r.lines.filter((l) => l.event === 'export_failed').length >= 3 ? true : undefined), 5000, 20);
    assert.equal(failed, true, 'kept retrying while postmap failed');
    const fails = r.lines.filter((l) => l.event === 'export_failed');
    assert.ok((fails[1]!.retry_ms as number) > (fails[0]!.retry_ms as number), 'back-off grows');
    assert.match(String(fails[0]!.err), /simulated outage/);
    assert.equal(r.exporter.stats().pending, 4);
    assert.equal(await query(r.spec.text, '192.0.2.91', cfgDir), undefined);
    await unlink(flag);
    await until(r.spec.text, '192.0.2.91', 'OK', 5000);
    await until(r.spec.text, '192.0.2.90', undefined);
    assert.deepEqual([...(await dump(r.spec.text, cfgDir)).keys()].sort(), ['192.0.2.91', '192.0.2.92', '2001:db8::93']);
    assert.ok(r.lines.some((l) => l.event === 'export_recovered'));
    assert.equal(r.exporter.stats().pending, 0);
  } finally {
    await rm(flag, { force: true });
    await r.close();
  }
});

test('one postmap at a time on the table, under concurrent records, expiries and reconciles', async () => {
  const lock = join(root, 'postmap-lock');
  const overlaps = join(root, 'postmap-overlaps');
  const shim = join(root, 'postmap-serial');
  await writeFile(overlaps, '');
  await writeFile(
    shim,
    `#!/bin/sh\nif ! mkdir '${lock}' 2>/dev/null; then echo overlap >> '${overlaps}'; ${POSTMAP} "$@"; exit $?; fi\nsleep 0.02\n${POSTMAP} "$@"\nrc=$?\nrmdir '${lock}'\nexit $rc\n`,
    { mode: 0o755 },
  );
  const r = await rig({ postmap: shim, batchDelayMs: 1 });
  try {
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < 60; i++) {
      writes.push(r.map.recordMany([login(`198.51.100.${i + 1}`, { ttl: i % 3 === 0 ? 1 : 600 })]));
      if (i % 10 === 0) writes.push(r.map.sweep(), r.exporter.flush());
      if (i % 7 === 0) await sleep(5);
    }
    await Promise.all(writes);
    await sleep(1200); // the ttl = 1 grants expire meanwhile
    await r.exporter.flush();
    await until(r.spec.text, '198.51.100.1', undefined);
    const keys = [...(await dump(r.spec.text, cfgDir)).keys()];
    assert.equal(keys.length, 40, `the 40 long grants remain: ${keys.length}`);
    assert.equal(await readFile(overlaps, 'utf8'), '', 'two postmap processes ran at once');
    assert.equal(r.exporter.stats().maxConcurrent, 1);
  } finally {
    await r.close();
  }
});

test('postmap missing or not executable: RG_ERR_POSTMAP at start, naming the path and the fix', async () => {
  const dir = join(root, `t${++n}`);
  await mkdir(dir);
  const notExec = join(root, 'postmap-not-exec');
  await writeFile(notExec, '#!/bin/sh\n', { mode: 0o644 });
  const map = await openAccessMap({ type: 'lmdb', path: join(dir, 'map'), mynetworks: new CidrSet([]), neverAuthorize: new CidrSet([]), clock: systemClock, logger: silentLogger(), verify: false });
  try {
    for (const [postmap, why] of [
      [join(root, 'no-such-postmap'), /does not exist/],
      [notExec, /is not executable/],
      [root, /is not a file/],
    ] as const) {
      await assert.rejects(
        startTableExport({ settings: { table: `lmdb:${dir}/pbs`, value: 'OK', postmap, config_directory: cfgDir }, map, clock: systemClock, logger: silentLogger() }),
        (e: unknown) => isRelaygateError(e) && e.code === 'RG_ERR_POSTMAP' && why.test(e.message) && /install Postfix/.test(e.message),
      );
    }
    // PATH without postmap still finds /usr/sbin/postmap (PATH of non-root users often lacks sbin)
    assert.equal(await resolvePostmap(undefined, '/nonexistent-bin'), POSTMAP);
    assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith('pbs')), [], 'nothing written');
  } finally {
    await map.close();
  }
});

test('a start-up failure of postmap is RG_ERR_EXPORT_TABLE with postmap\'s message and the fix', async () => {
  const dir = join(root, `t${++n}`);
  await mkdir(dir);
  const map = await openAccessMap({ type: 'lmdb', path: join(dir, 'map'), mynetworks: new CidrSet([]), neverAuthorize: new CidrSet([]), clock: systemClock, logger: silentLogger(), verify: false });
  try {
    await assert.rejects(
      startTableExport({ settings: { table: `lmdb:${dir}/pbs`, value: 'OK', config_directory: join(root, 'no-postfix-etc') }, map, clock: systemClock, logger: silentLogger() }),
      (e: unknown) => isRelaygateError(e) && e.code === 'RG_ERR_EXPORT_TABLE' && /main\.cf/.test(e.message) && /set \[export\] config_directory/.test(e.message),
    );
  } finally {
    await map.close();
  }
});

test('a table directory every user may write to is refused at start (anyone could swap the table)', async () => {
  const dir = join(root, `t${++n}`);
  await mkdir(dir);
  await chmod(dir, 0o1777);
  const map = await openAccessMap({ type: 'lmdb', path: join(root, `t${n}-map`), mynetworks: new CidrSet([]), neverAuthorize: new CidrSet([]), clock: systemClock, logger: silentLogger(), verify: false });
  try {
    await assert.rejects(
      startTableExport({ settings: { table: `lmdb:${dir}/pbs`, value: 'OK', config_directory: cfgDir }, map, clock: systemClock, logger: silentLogger() }),
      (e: unknown) => isRelaygateError(e) && e.code === 'RG_ERR_EXPORT_TABLE' && /writable by every user \(mode 1777\)/.test(e.message),
    );
    assert.deepEqual(await readdir(dir), []);
  } finally {
    await map.close();
  }
});

test('a reconcile does not undo a delete or a grant that happened while it was reading the map', async () => {
  const dir = join(root, `t${++n}`);
  await mkdir(dir);
  const { logger } = captureLogger();
  const raw = await openAccessMap({ type: 'lmdb', path: join(dir, 'map'), mynetworks: new CidrSet([]), neverAuthorize: new CidrSet([]), clock: systemClock, logger, verify: false });
  let gate: Promise<void> = Promise.resolve();
  let reading: () => void = () => undefined;
  const slowList = {
    async list(now?: number) {
      const grants = await raw.list(now); // read first, hand over later: the slow reader sees the old state
      reading();
      await gate;
      return grants;
    },
  };
  const spec = parseTableSpec(`lmdb:${dir}/pbs`);
  assert.ok(typeof spec !== 'string');
  const exporter = new TableExporter({ table: spec, value: 'OK', postmap: POSTMAP, configDirectory: cfgDir, map: slowList, clock: systemClock, logger });
  await exporter.start();
  const map = observeAccessMap(raw, { noteGrant: (g) => exporter.noteGrant(g), noteDelete: (ip) => exporter.noteDelete(ip), noteSweep: () => undefined }, logger);
  try {
    await map.record(login('192.0.2.100'));
    await exporter.flush();
    let open: () => void = () => undefined;
    gate = new Promise((r) => (open = r));
    const started = new Promise<void>((r) => (reading = r));
    const rec = exporter.reconcile();
    await started; // the reconcile holds a list with 192.0.2.100 and without 192.0.2.101
    await map.delete('192.0.2.100');
    await map.record(login('192.0.2.101'));
    open();
    await rec;
    await exporter.flush();
    assert.equal(await query(spec.text, '192.0.2.100', cfgDir), undefined, 'the delete stands');
    assert.equal(await query(spec.text, '192.0.2.101', cfgDir), 'OK', 'the new grant stands');
  } finally {
    await exporter.stop();
    await raw.close();
  }
});
