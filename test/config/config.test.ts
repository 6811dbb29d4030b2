// Configuration: defaults, durations, every error at once with key and line, unknown keys, semantic checks
// (CIDRs, restriction names, table files), the contrib template and README reference kept in step.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  loadConfig,
  validateConfig,
  parseConfig,
  parseDuration,
  formatDuration,
  showConfig,
  defaultsTemplate,
  OPTION_DOCS,
  schemaKeys,
  DEFAULT_RELAY_RESTRICTIONS,
} from '../../src/config/index.ts';
import { RelaygateError } from '../../src/errors.ts';
import { parse as tomlParse } from 'smol-toml';

async function withFile(text: string, fn: (file: string, dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'rg-config-'));
  try {
    const file = join(dir, 'relaygate.toml');
    await writeFile(file, text);
    await fn(file, dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function problemsOf(text: string): Promise<{ code: string; details: readonly string[]; message: string }> {
  let caught: unknown;
  await withFile(text, async (file) => {
    try {
      await validateConfig(await loadConfig(file));
    } catch (err) {
      caught = err;
    }
  });
  assert.ok(caught instanceof RelaygateError, `expected a RelaygateError, got ${String(caught)}`);
  return caught;
}

test('built-in defaults: safe, loopback-only, no root', async () => {
  const { config, file } = await loadConfig(undefined, await mkdtemp(join(tmpdir(), 'rg-nocfg-')));
  assert.equal(file, null);
  assert.equal(config.data_dir, './var/relaygate');
  assert.equal(config.grace, 1800);
  assert.equal(config.sweep_interval, 60);
  assert.deepEqual(config.relay_restrictions, DEFAULT_RELAY_RESTRICTIONS);
  assert.deepEqual(config.mynetworks, ['127.0.0.0/8', '[::1]/128']);
  assert.equal(config.store.type, 'lmdb');
  assert.ok(Object.isFrozen(config) && Object.isFrozen(config.store) && Object.isFrozen(config.mynetworks));
});

test('./relaygate.toml is used when present and -c is not given', async () => {
  await withFile('grace = "5m"\n', async (_file, dir) => {
    const { config, file } = await loadConfig(undefined, dir);
    assert.equal(file, join(dir, 'relaygate.toml'));
    assert.equal(config.grace, 300);
  });
});

for (const [input, seconds] of [
  [1800, 1800], ['1800', 1800], ['90s', 90], ['30m', 1800], ['2h', 7200], ['1d', 86400], ['1w', 604800], [' 5M ', 300],
] as const) {
  test(`duration ${JSON.stringify(input)} = ${seconds}s`, () => assert.equal(parseDuration(input), seconds));
}
for (const bad of ['', 'soon', '-5', '1.5h', '30 minutes', 1.5, -1, null, true]) {
  test(`duration ${JSON.stringify(bad)} is refused`, () => assert.equal(parseDuration(bad), undefined));
}
test('formatDuration picks the largest exact unit', () => {
  assert.deepEqual([1800, 90, 3600, 86400 * 14, 61].map(formatDuration), ['30m', '90s', '1h', '2w', '61s']);
});

test('every problem at once, each with its key and line', async () => {
  const err = await problemsOf(
    ['grace = "soon"', 'mynetworks = "10.0.0.0/8"', 'colour = "blue"', 'log_level = "loud"', '', '[store]', 'type = "bdb"', 'size = 1', ''].join('\n'),
  );
  assert.equal(err.code, 'RG_ERR_CONFIG_INVALID');
  const d = err.details.join('\n');
  assert.match(d, /grace \(line 1\): grace: expected seconds or a duration/);
  assert.match(d, /mynetworks \(line 2\): .*array/i);
  assert.match(d, /colour \(line 3\): unknown key/);
  assert.match(d, /log_level \(line 4\)/);
  assert.match(d, /store\.type \(line 7\)/);
  assert.match(d, /store\.size \(line 8\): unknown key/);
  assert.equal(err.details.length, 6);
});

test('an unknown table is an unknown key with its line', async () => {
  const err = await problemsOf('[smtpd]\nport = 25\n');
  assert.match(err.details.join('\n'), /smtpd \(line 1\): unknown key/);
});

test('invalid TOML names file, line and column', async () => {
  const err = await problemsOf('grace = 30m\n');
  assert.equal(err.code, 'RG_ERR_CONFIG_READ');
  assert.match(err.message, /relaygate\.toml:1:\d+:/);
});

test('unreadable file: RG_ERR_CONFIG_READ naming the path', async () => {
  await assert.rejects(loadConfig('/nonexistent/relaygate.toml'), (e: unknown) => {
    assert.ok(e instanceof RelaygateError);
    assert.equal(e.code, 'RG_ERR_CONFIG_READ');
    assert.match(e.message, /\/nonexistent\/relaygate\.toml: ENOENT/);
    return true;
  });
});

test('semantic problems are all listed: bad CIDRs, unknown restrictions, missing tables', async () => {
  const err = await problemsOf(
    [
      'mynetworks = ["10.0.0.0/8", "10.1.2.3/16", "mail.example.com"]',
      'never_authorize = ["fe80::1%eth0/64"]',
      'relay_restrictions = ["permit_mynetworks", "permit_everyone", "check_client_access texthash:/nonexistent/access", "reject_unauth_destination"]',
      'sender_login_maps = ["texthash:/nonexistent/logins"]',
    ].join('\n'),
  );
  assert.equal(err.code, 'RG_ERR_CONFIG_INVALID');
  const d = err.details.join('\n');
  assert.match(d, /mynetworks \(line 1\): .*10\.1\.2\.3\/16.*host bits.*10\.1\.0\.0\/16/);
  assert.match(d, /mynetworks \(line 1\): .*mail\.example\.com/);
  assert.match(d, /never_authorize \(line 2\): .*zone/);
  assert.match(d, /permit_everyone/);
  assert.match(d, /\/nonexistent\/access/);
  assert.match(d, /\/nonexistent\/logins/);
});

test('a relay list without any reject is refused (it would be an open relay)', async () => {
  const err = await problemsOf('relay_restrictions = ["permit_mynetworks", "permit_pop_before_smtp"]\n');
  assert.equal(err.code, 'RG_ERR_CONFIG_INVALID');
  assert.match(err.details.join('\n'), /reject_unauth_destination/);
});

test('wrong types are reported with the expected type', async () => {
  const err = await problemsOf('grace = true\nrelay_domains = [1, 2]\nsweep_interval = 0\n');
  const d = err.details.join('\n');
  assert.match(d, /grace \(line 1\)/);
  assert.match(d, /relay_domains\[0\] \(line 2\): .*string/);
  assert.match(d, /sweep_interval \(line 3\): .*at least 1/);
});

test('a valid file passes and is frozen', async () => {
  await withFile('grace = "10m"\nmynetworks = ["192.0.2.0/24", "[2001:db8::]/32"]\n[store]\nmap_size = 2097152\n', async (file) => {
    const loaded = await loadConfig(file);
    const nets = await validateConfig(loaded);
    assert.equal(loaded.config.grace, 600);
    assert.ok(nets.mynetworks.contains('192.0.2.55'));
    assert.ok(nets.mynetworks.contains('2001:db8::1'));
    assert.ok(!nets.mynetworks.contains('127.0.0.1'));
  });
});

test('config show prints only what differs from the defaults (postconf -n)', () => {
  assert.equal(showConfig(parseConfig({}, '', 'x')), '');
  const c = parseConfig({ grace: 600, relay_domains: ['example.org'], store: { path: '/srv/map' } }, '', 'x');
  assert.equal(showConfig(c), 'grace = "10m"\nrelay_domains = ["example.org"]\nstore.path = "/srv/map"\n');
  assert.match(showConfig(c, true), /^log_level = "info"$/m);
});

test('OPTION_DOCS documents exactly the keys the schema accepts', () => {
  assert.deepEqual(OPTION_DOCS.map((o) => o.key), schemaKeys());
});

test('contrib/relaygate.toml is the generated template: every option, commented out at its default', async () => {
  const contrib = await readFile(new URL('../../contrib/relaygate.toml', import.meta.url), 'utf8');
  assert.equal(contrib, defaultsTemplate(), 'regenerate with: npx relaygate config show --defaults > contrib/relaygate.toml');
  for (const o of OPTION_DOCS) assert.ok(contrib.includes(`#${o.key.split('.').pop()} = ${o.default}`), o.key);
});

test('the template, uncommented without its examples, parses to exactly the defaults', () => {
  const examples = new Set(OPTION_DOCS.filter((o) => o.example).map((o) => o.key.split('.').pop()!));
  const lines: string[] = [];
  let section = '';
  for (const l of defaultsTemplate().split('\n')) {
    const header = /^#\[\[?(\w+)\]\]?$/.exec(l);
    if (header) {
      section = l.startsWith('#[[') ? '' : header[1]!;
      if (section) lines.push(`[${section}]`);
      continue;
    }
    const kv = /^#(\w+) = /.exec(l);
    if (kv && section !== '' && !examples.has(kv[1]!)) lines.push(l.slice(1));
    else if (kv && section === '' && !l.startsWith('#[') && !examples.has(kv[1]!) && lines.every((x) => !x.startsWith('['))) lines.push(l.slice(1));
  }
  const text = lines.join('\n');
  assert.equal(showConfig(parseConfig(tomlParse(text), text, 'template')), '');
  assert.ok(text.includes('[smtp]') && text.includes('message_size_limit = 10240000'), 'the [smtp] defaults are checked too');
});

test('README documents every configuration key with its default', async () => {
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
  for (const o of OPTION_DOCS) assert.ok(readme.includes(`| \`${o.key}\` | \`${o.default}\` |`), `README lacks ${o.key}`);
});

test('[[watch]] tables are validated at start-up: format, custom pattern, source kind, directory', async () => {
  const err = await problemsOf(
    [
      '[[watch]]',
      'path = "/nonexistent-dir/mail.log"',
      'format = "nosuchd"',
      '',
      '[[watch]]',
      'path = "/var/log/x.log"',
      'format = "dovecot"',
      'pattern = "Login: rip=(?<ip>[0-9.]+)"',
      '',
      '[[watch]]',
      'stdin = true',
      'format = "dovecot"',
      '',
      '[[watch]]',
      'path = "/tmp/y.log"',
      'format = "dovecot"',
      'pattern = "^x.* rip=(?<ip>[0-9.]+)$"',
      '',
      '[[watch]]',
      'path = "/tmp/y.log"',
      'format = "courier"',
    ].join('\n'),
  );
  const d = err.details.join('\n');
  assert.match(d, /watch\[0\]\.format \(line 3\): unknown format "nosuchd"; known: .*dovecot/);
  assert.match(d, /watch\[0\]\.path \(line 2\): directory \/nonexistent-dir does not exist/);
  assert.match(d, /watch\[1\]\.pattern \(line 8\): pattern must be anchored/);
  assert.match(d, /watch\[3\]\.pattern \(line 17\): pattern is unsafe: catch-all/);
  assert.match(d, /watch\[4\]\.path: \/tmp\/y\.log is already watched by watch\[3\]/);
});

test('a [[watch]] must name exactly one source kind', async () => {
  const err = await problemsOf('[[watch]]\nstdin = true\njournald = true\nformat = "dovecot"\n\n[[watch]]\nformat = "dovecot"\n');
  const d = err.details.join('\n');
  assert.match(d, /watch\[0\].*exactly one of path, journald = true, stdin = true/);
  assert.match(d, /watch\[1\].*exactly one of path, journald = true, stdin = true/);
});
