// Table keys as Postfix looks them up, values, `[export] table` parsing and the [export] config checks.
// Expected IPv6 keys are glibc 2.36's inet_ntop output for the same addresses (what smtpd uses for the client
// address), taken on this machine with python3's socket.inet_ntop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { postfixClientKey, tableValue, parseTableSpec, exportConfigProblems, TABLE_TYPES } from '../../src/export/index.ts';
import { loadConfig, validateConfig } from '../../src/config/index.ts';
import { RelaygateError } from '../../src/errors.ts';

test('postfixClientKey: IPv4 dotted, IPv6 as inet_ntop prints it', () => {
  const rows: Array<[string, string]> = [
    ['192.0.2.7', '192.0.2.7'],
    ['127.0.0.21', '127.0.0.21'],
    ['::1', '::1'],
    ['2001:db8::1', '2001:db8::1'],
    ['2001:db8::1:0:0:1', '2001:db8::1:0:0:1'], // first longest zero run compressed
    ['1:0:0:2::3', '1:0:0:2::3'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero group is not compressed
    ['fe80::1', 'fe80::1'],
    ['::1:0:0', '::1:0:0'],
    ['::ffff:0:102:304', '::ffff:0:102:304'], // IPv4-translated: hex, like glibc
    ['::102:304', '::1.2.3.4'], // IPv4-compatible (deprecated): glibc prints a dotted tail
    ['::a00:1', '::10.0.0.1'],
  ];
  for (const [ip, key] of rows) assert.equal(postfixClientKey(ip), key, ip);
});

test('postfixClientKey refuses everything that is not canonical address text', () => {
  for (const bad of [
    '',
    'unknown',
    'localhost',
    '2001:DB8::1', // upper case: canonical text only, one key per address
    '2001:db8:0:0:0:0:0:1', // uncompressed
    '::ffff:192.0.2.7', // mapped: the store keeps it as IPv4
    '010.0.0.1',
    '1.2.3.4 OK',
    '1.2.3.4\n0.0.0.0',
    ' 1.2.3.4',
    'fe80::1%eth0',
    '[::1]',
    '192.0.2.0/24',
    'alice@example.com',
  ]) {
    assert.equal(postfixClientKey(bad), undefined, JSON.stringify(bad));
  }
});

test('tableValue: OK, or the expiry in whole Unix seconds (rounded up: never before the grant ends)', () => {
  assert.equal(tableValue('OK', 1_700_000_000_123), 'OK');
  assert.equal(tableValue('expiry', 1_700_000_000_000), '1700000000');
  assert.equal(tableValue('expiry', 1_700_000_000_001), '1700000001');
  assert.match(tableValue('expiry', Date.now() + 1800_000), /^\d+$/);
});

test('parseTableSpec: type:name, bare path = lmdb, postmap suffix per type', () => {
  const s = parseTableSpec('/var/lib/relaygate/pbs');
  assert.ok(typeof s !== 'string');
  assert.equal(s.type.type, 'lmdb');
  assert.equal(s.file, '/var/lib/relaygate/pbs.lmdb');
  assert.equal(s.text, 'lmdb:/var/lib/relaygate/pbs');
  const files: Record<string, string> = { lmdb: '.lmdb', hash: '.db', btree: '.db', cdb: '.cdb' };
  for (const [type, suffix] of Object.entries(files)) {
    const t = parseTableSpec(`${type}:/tmp/x/pbs`);
    assert.ok(typeof t !== 'string', type);
    assert.equal(t.file, `/tmp/x/pbs${suffix}`);
    assert.equal(t.dir, '/tmp/x');
    assert.equal(t.base, 'pbs');
  }
  assert.equal(TABLE_TYPES.cdb!.incremental, false);
  assert.equal(TABLE_TYPES.lmdb!.incremental, true);
});

test('parseTableSpec refuses types postmap cannot keep, relative names, suffixes and odd paths, naming the fix', () => {
  const cases: Array<[string, RegExp]> = [
    ['texthash:/etc/postfix/pbs', /cannot be exported with postmap; use one of lmdb, hash, btree, cdb/],
    ['cidr:/etc/postfix/pbs', /cannot be exported/],
    ['dbm:/etc/postfix/pbs', /cannot be exported/],
    ['socketmap:inet:127.0.0.1:1:x', /cannot be exported/],
    ['lmdb:pbs', /absolute path/],
    ['relative/pbs', /absolute path/],
    ['lmdb:', /absolute path/],
    ['lmdb:/etc/postfix/pbs.lmdb', /without \.lmdb \(postmap adds it\), e\.g\. "lmdb:\/etc\/postfix\/pbs"/],
    ['hash:/etc/postfix/pbs.db', /without \.db/],
    ['lmdb:/etc/postfix/', /is a directory/],
    ['lmdb:/etc/post fix/pbs', /whitespace/],
    ['lmdb:/etc/postfix/a,b', /commas/],
  ];
  for (const [value, re] of cases) {
    const r = parseTableSpec(value);
    assert.equal(typeof r, 'string', value);
    assert.match(r as string, re, value);
  }
});

test('[export] problems are listed by config check with key and line; a valid section passes', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rg-export-cfg-'));
  try {
    await mkdir(join(dir, 'tables'));
    const write = async (text: string) => {
      const f = join(dir, 'relaygate.toml');
      await writeFile(f, `data_dir = "${join(dir, 'data')}"\n${text}`);
      return loadConfig(f);
    };
    const bad = await write(`[export]\ntable = "texthash:${dir}/tables/pbs"\nvalue = "OK"\nconfig_directory = "${dir}/nope"\n`);
    const err = await validateConfig(bad).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof RelaygateError && err.code === 'RG_ERR_CONFIG_INVALID');
    assert.ok(err.details.some((d) => /^export\.table \(line 3\): .*cannot be exported with postmap/.test(d)), err.details.join('\n'));
    assert.ok(err.details.some((d) => /^export\.config_directory \(line 5\): .*main\.cf does not exist/.test(d)), err.details.join('\n'));

    const missingDir = await write(`[export]\ntable = "lmdb:${dir}/absent/pbs"\n`);
    await assert.rejects(validateConfig(missingDir), (e: unknown) => e instanceof RelaygateError && e.details.some((d) => /directory .*absent does not exist/.test(d)));

    const badValue = await write(`[export]\ntable = "lmdb:${dir}/tables/pbs"\nvalue = "REJECT"\n`).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(badValue instanceof RelaygateError && badValue.code === 'RG_ERR_CONFIG_INVALID' && badValue.details.some((d) => /export\.value/.test(d)), String(badValue));

    const orphan = exportConfigProblems({ value: 'OK', postmap: '/usr/sbin/postmap' });
    assert.equal(orphan.length, 1);
    assert.match(orphan[0]!, /export\.postmap: has no effect without export\.table/);

    await writeFile(join(dir, 'main.cf'), '');
    const good = await write(`[export]\ntable = "cdb:${dir}/tables/pbs"\nvalue = "expiry"\nconfig_directory = "${dir}"\n`);
    await validateConfig(good);
    assert.equal(good.config.export.value, 'expiry');
    const none = await write('');
    await validateConfig(none);
    assert.equal(none.config.export.table, undefined);
    assert.equal(none.config.export.value, 'OK');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
