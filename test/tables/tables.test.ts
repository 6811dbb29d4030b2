// Lookup tables: the registry and `type:name` specs, inline, texthash and cidr. Table-driven, on temp files.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openTable, parseTableSpec, TABLE_TYPES } from '../../src/tables/index.ts';
import { RelaygateError, type ErrorCode } from '../../src/errors.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rg-tables-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

function rejectsWith(code: ErrorCode, message: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof RelaygateError, String(e));
    assert.equal(e.code, code);
    assert.match(e.message, message);
    return true;
  };
}

// ---------- registry ----------

test('registry: every row has a name, a form, a description and opens from its README form', async () => {
  const names = TABLE_TYPES.map((t) => t.name);
  assert.deepEqual(names, ['inline', 'texthash', 'cidr']);
  assert.equal(new Set(names).size, names.length);
  for (const t of TABLE_TYPES) {
    assert.match(t.form, new RegExp(`^${t.name}:`));
    assert.ok(t.description.length > 0 && !t.description.includes('\n'));
  }
});

test('registry rows are documented in README "Lookup tables" exactly', async () => {
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
  for (const t of TABLE_TYPES) {
    assert.ok(readme.includes(`| \`${t.name}\` | \`${t.form}\` | ${t.description} |`), `README row for ${t.name}`);
  }
});

const BAD_SPECS: ReadonlyArray<readonly [spec: string, code: ErrorCode, message: RegExp]> = [
  ['', 'RG_ERR_TABLE_TYPE', /expected type:name/],
  ['/etc/relaygate/access', 'RG_ERR_TABLE_TYPE', /invalid table "\/etc\/relaygate\/access": expected type:name, e\.g\. texthash:/],
  ['texthash:', 'RG_ERR_TABLE_TYPE', /expected type:name/],
  [':/etc/x', 'RG_ERR_TABLE_TYPE', /expected type:name/],
  ['regexp:/etc/x', 'RG_ERR_TABLE_TYPE', /unknown table type "regexp".*supported types are inline, texthash, cidr/],
  ['hash:/etc/postfix/access', 'RG_ERR_TABLE_TYPE', /unknown table type "hash".*use texthash:\/etc\/postfix\/access/],
  ['lmdb:/etc/postfix/access', 'RG_ERR_TABLE_TYPE', /use texthash:/],
];

for (const [spec, code, message] of BAD_SPECS) {
  test(`openTable(${JSON.stringify(spec)}) → ${code}`, async () => {
    await assert.rejects(openTable(spec), rejectsWith(code, message));
  });
}

test('parseTableSpec splits at the first colon and lower-cases the type', () => {
  assert.deepEqual(parseTableSpec('TextHash:/etc/a:b'), { type: 'texthash', name: '/etc/a:b' });
  assert.deepEqual(parseTableSpec('inline:{ a=1 }'), { type: 'inline', name: '{ a=1 }' });
});

// ---------- inline ----------

const INLINE: ReadonlyArray<readonly [spec: string, lookups: Record<string, string | undefined>]> = [
  ['inline:{ key=value, key2=value2 }', { key: 'value', key2: 'value2', KEY: 'value', key3: undefined }],
  ['inline:{a=1,b=2}', { a: '1', b: '2' }],
  ['inline:{ 192.0.2.9=REJECT }', { '192.0.2.9': 'REJECT' }],
  ['inline:{ { 192.0.2.9 = REJECT go away, spammer } }', { '192.0.2.9': 'REJECT go away, spammer' }],
  ['inline:{ { alice@example.com = alice, alice2 }, bob@example.com=bob }', { 'alice@example.com': 'alice, alice2', 'bob@example.com': 'bob' }],
  ['inline:{ Example.COM=OK }', { 'example.com': 'OK', 'EXAMPLE.com': 'OK' }],
  ['inline:{ a=x=y }', { a: 'x=y' }],
];

for (const [spec, lookups] of INLINE) {
  test(`inline: ${spec}`, async () => {
    const t = await openTable(spec);
    assert.equal(t.type, 'inline');
    assert.equal(t.spec, spec);
    assert.equal(t.partialKeys, true);
    for (const [k, v] of Object.entries(lookups)) assert.equal(await t.get(k), v, k);
    await t.close();
  });
}

const INLINE_BAD: ReadonlyArray<readonly [spec: string, message: RegExp]> = [
  ['inline:a=1', /must be enclosed in \{ \}/],
  ['inline:{ a=1', /must be enclosed in \{ \}/],
  ['inline:{ }', /no entries/],
  ['inline:{ a }', /entry "a" is not key=value/],
  ['inline:{ =1 }', /empty key/],
  ['inline:{ a= }', /empty value/],
  ['inline:{ { a = 1 }, { b = 2 }', /missing "\}"|must be enclosed/],
  ['inline:{ a=1 } }', /unbalanced "\}"/],
  ['inline:{ {a=1}x }', /text after its closing/],
];

for (const [spec, message] of INLINE_BAD) {
  test(`inline syntax error: ${spec}`, async () => {
    await assert.rejects(openTable(spec), rejectsWith('RG_ERR_TABLE_OPEN', message));
  });
}

test('inline: a duplicate key keeps the first value and warns', async () => {
  const t = await openTable('inline:{ a=1, A=2 }');
  assert.equal(await t.get('a'), '1');
  assert.match(t.warnings?.[0] ?? '', /duplicate entry "a": the first one is used/);
});

// ---------- texthash ----------

test('texthash: key value lines, comments, blank lines, continuations, folding', async () => {
  const path = await file(
    'access',
    [
      '# client access',
      '',
      '192.0.2.9      REJECT go away',
      '   # a comment inside does not end the entry',
      '   and stay away',
      'Mail.Example.COM\tOK',
      '   ',
      '192.0.2        DUNNO',
      'alice@          553 5.7.1 no alice here',
      '# 198.51.100.1 OK',
      'key   value with   inner   spaces   ',
      'trailing.hash  OK # not a comment in Postfix',
      '',
    ].join('\n'),
  );
  const t = await openTable(`texthash:${path}`);
  assert.equal(t.type, 'texthash');
  assert.equal(t.partialKeys, true);
  assert.deepEqual(t.warnings, []);
  const expected: Record<string, string | undefined> = {
    '192.0.2.9': 'REJECT go away and stay away',
    'mail.example.com': 'OK',
    'MAIL.EXAMPLE.COM': 'OK',
    '192.0.2': 'DUNNO',
    'alice@': '553 5.7.1 no alice here',
    '198.51.100.1': undefined,
    key: 'value with   inner   spaces',
    'trailing.hash': 'OK # not a comment in Postfix',
    '#': undefined,
    '': undefined,
  };
  for (const [k, v] of Object.entries(expected)) assert.equal(await t.get(k), v, k);
  await t.close();
});

test('texthash: CRLF line ends are accepted', async () => {
  const t = await openTable(`texthash:${await file('crlf', 'a 1\r\nb 2\r\n')}`);
  assert.equal(await t.get('a'), '1');
  assert.equal(await t.get('b'), '2');
});

test('texthash: an empty file is an empty table', async () => {
  const t = await openTable(`texthash:${await file('empty', '')}`);
  assert.equal(await t.get('anything'), undefined);
});

test('texthash: a duplicate key keeps the FIRST value (as Postfix) and warns with file:line', async () => {
  const path = await file('dup', 'a first\nb x\nA second\n');
  const t = await openTable(`texthash:${path}`);
  assert.equal(await t.get('a'), 'first');
  assert.deepEqual(t.warnings, [`${path}:3: duplicate entry "a": the first one is used (as in Postfix)`]);
});

test('texthash: a "key: value" record warns (alias file?)', async () => {
  const path = await file('alias', 'postmaster: root\n');
  const t = await openTable(`texthash:${path}`);
  assert.match(t.warnings?.[0] ?? '', /:1: record is in "key: value" format; is this an alias file\?/);
});

const TEXTHASH_BAD: ReadonlyArray<readonly [name: string, text: string, message: RegExp]> = [
  ['nokey', 'a 1\nlonely\nb 2\n', /nokey:2: expected "key value"/],
  ['leading-cont', '  indented first line\na 1\n', /leading-cont:1: continuation line .* with no line before it/],
  ['after-comment', '# only a comment\n  continued\n', /after-comment:2: continuation line/],
];

for (const [name, text, message] of TEXTHASH_BAD) {
  test(`texthash syntax error with file:line: ${name}`, async () => {
    const path = await file(name, text);
    await assert.rejects(openTable(`texthash:${path}`), rejectsWith('RG_ERR_TABLE_OPEN', message));
  });
}

test('texthash: a missing file is RG_ERR_TABLE_OPEN naming the path and the fix', async () => {
  await assert.rejects(
    openTable(`texthash:${join(dir, 'nope')}`),
    rejectsWith('RG_ERR_TABLE_OPEN', /texthash:.*nope: cannot read .*nope: ENOENT: no such file; create it .* or correct the path/),
  );
});

test('texthash: a directory is RG_ERR_TABLE_OPEN', async () => {
  await mkdir(join(dir, 'adir'), { recursive: true });
  await assert.rejects(openTable(`texthash:${join(dir, 'adir')}`), rejectsWith('RG_ERR_TABLE_OPEN', /EISDIR: is a directory/));
});

test('texthash: an unreadable file is RG_ERR_TABLE_OPEN (skipped when running as root)', { skip: process.getuid?.() === 0 }, async () => {
  const path = await file('secret', 'a 1\n');
  await chmod(path, 0o000);
  await assert.rejects(openTable(`texthash:${path}`), rejectsWith('RG_ERR_TABLE_OPEN', /EACCES: permission denied/));
});

test('texthash: the file is read at open; later edits need a reopen (reload)', async () => {
  const path = await file('snapshot', 'a 1\n');
  const t = await openTable(`texthash:${path}`);
  await writeFile(path, 'a 2\n');
  assert.equal(await t.get('a'), '1');
  assert.equal(await (await openTable(`texthash:${path}`)).get('a'), '2');
});

// ---------- cidr ----------

test('cidr: first match wins; IPv4, IPv6, brackets, mapped networks, hosts, comments, continuation', async () => {
  const path = await file(
    'clients.cidr',
    [
      '# cidr_table(5)',
      '192.0.2.128/25      REJECT upper half',
      '192.0.2.0/24        OK',
      '192.0.2.200/32      DUNNO never reached: the /25 above matches first',
      '[2001:db8::]/32     REJECT v6',
      '::ffff:10.0.0.0/104 DEFER mapped network',
      '198.51.100.7        OK',
      '203.0.113.0/24      REJECT',
      '    with a continued text',
      '',
    ].join('\n'),
  );
  const t = await openTable(`cidr:${path}`);
  assert.equal(t.type, 'cidr');
  assert.equal(t.partialKeys, false);
  const expected: Record<string, string | undefined> = {
    '192.0.2.1': 'OK',
    '192.0.2.200': 'REJECT upper half',
    '192.0.3.1': undefined,
    '2001:db8::5': 'REJECT v6',
    '2001:DB8:0:0::5': 'REJECT v6',
    '10.9.8.7': 'DEFER mapped network',
    '::ffff:10.9.8.7': 'DEFER mapped network',
    '::ffff:192.0.2.1': 'OK',
    '198.51.100.7': 'OK',
    '198.51.100.8': undefined,
    '203.0.113.5': 'REJECT with a continued text',
    // keys that are not addresses are simply not found
    unknown: undefined,
    'mail.example.com': undefined,
    '192.0.2': undefined,
    '': undefined,
    'fe80::1%eth0': undefined,
  };
  for (const [k, v] of Object.entries(expected)) assert.equal(await t.get(k), v, k);
});

const CIDR_BAD: ReadonlyArray<readonly [name: string, text: string, message: RegExp]> = [
  ['hostbits', '# ok\n192.0.2.0/24 OK\n192.0.2.7/24 REJECT\n', /hostbits:3: invalid network "192\.0\.2\.7\/24": host bits are set; perhaps you meant 192\.0\.2\.0\/24/],
  ['novalue', '192.0.2.0/24\n', /novalue:1: expected "network\/len value"/],
  ['hostname', 'mail.example.com OK\n', /hostname:1: invalid network "mail\.example\.com"/],
  ['badlen', '10.0.0.0/33 OK\n', /badlen:1: .*prefix length must be 0\.\.32/],
  ['zone', 'fe80::/10 OK\nfe80::1%eth0 OK\n', /zone:2: .*zone ids/],
  ['ifblock', 'if 10.0.0.0/8\n10.1.0.0/16 OK\nendif\n', /ifblock:1: "if" .* not supported/],
  ['negation', '!10.0.0.0/8 OK\n', /negation:1: .*not supported/],
  ['cont', '   10.0.0.0/8 OK\n', /cont:1: continuation line/],
];

for (const [name, text, message] of CIDR_BAD) {
  test(`cidr syntax error with file:line: ${name}`, async () => {
    const path = await file(name, text);
    await assert.rejects(openTable(`cidr:${path}`), rejectsWith('RG_ERR_TABLE_OPEN', message));
  });
}

test('cidr: a missing file is RG_ERR_TABLE_OPEN naming the path', async () => {
  await assert.rejects(openTable(`cidr:${join(dir, 'missing.cidr')}`), rejectsWith('RG_ERR_TABLE_OPEN', /cidr:.*missing\.cidr: cannot read .*ENOENT/));
});
