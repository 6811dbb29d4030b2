// [drac] and [whoson] configuration (issue 6 item 5, safe defaults): loopback unless configured otherwise,
// a non-loopback listener refused without an allow list, "everyone" refused where callers create grants,
// dracd.allow problems named with their line — all through the same validateConfig() that `run` and
// `config check` use, and through `relaygate config check` itself once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseConfig, parseConfigText, validateConfig } from '../../src/config/index.ts';
import { isRelaygateError } from '../../src/errors.ts';
import { run } from '../helpers/proc.ts';
import { networkFeedsConfigured, dracEnabled, whosonEnabled } from '../../src/feeds/index.ts';

async function problemsOf(toml: string): Promise<string[]> {
  const raw = parseConfigText(toml, 'test.toml');
  const loaded = { config: parseConfig(raw, toml, 'test.toml'), file: 'test.toml', raw, text: toml };
  try {
    await validateConfig(loaded);
    return [];
  } catch (err) {
    if (!isRelaygateError(err)) throw err;
    return [...err.details];
  }
}

test('defaults: both servers off until a listener address is set; rpcbind "auto"; one address or a list', () => {
  const none = parseConfig({}, '', 'x');
  assert.deepEqual(none.drac, { rpcbind: 'auto', rate_limit: 500 });
  assert.deepEqual(none.whoson, { rate_limit: 500 });
  assert.equal(networkFeedsConfigured(none), false);
  assert.equal(networkFeedsConfigured(parseConfig(parseConfigText('[drac]\nlisten_udp = []\n[whoson]\nlisten = []\n', 'x'), '', 'x')), false);
  const one = parseConfig(parseConfigText('[drac]\nlisten_udp = "[::1]:5000"\nrpcbind = false\n', 'x'), '', 'x');
  assert.deepEqual(one.drac.listen_udp, ['[::1]:5000']);
  assert.equal(dracEnabled(one.drac), true);
  assert.equal(whosonEnabled(parseConfig(parseConfigText('[whoson]\nlisten = "127.0.0.1:9876"\n', 'x'), '', 'x').whoson), true);
  const bad = '[drac]\nrpcbind = "yes"\nlisten_udp = 5\n';
  assert.throws(
    () => parseConfig(parseConfigText(bad, 'x'), bad, 'x'),
    (err: unknown) => {
      assert.ok(isRelaygateError(err));
      assert.deepEqual([...err.details].sort(), ['drac.listen_udp (line 3): expected an address "ip:port" (IPv6: "[addr]:port") or a list of them', 'drac.rpcbind (line 2): expected true, false or "auto"']);
      return true;
    },
  );
});

test('the defaults and loopback listeners validate', async () => {
  assert.deepEqual(await problemsOf('[drac]\n[whoson]\n'), []);
  assert.deepEqual(await problemsOf('[drac]\nlisten_udp = ["127.0.0.5:0", "[::1]:0"]\nlisten_tcp = "127.0.0.1:0"\n[whoson]\nlisten = ["[::1]:9876"]\n'), []);
});

test('a non-loopback (or wildcard) listener without an allow list is refused, naming the fix', async () => {
  const p = await problemsOf('[drac]\nlisten_udp = ["0.0.0.0:0"]\nlisten_tcp = ["192.0.2.1:7000"]\n[whoson]\nlisten = ["[::]:9876"]\n');
  assert.equal(p.length, 3, p.join('\n'));
  assert.match(p[0]!, /^drac: 0\.0\.0\.0:0 is not a loopback address, and neither drac\.allow nor drac\.allow_file says who may add grants; list your POP\/IMAP servers/);
  assert.match(p[1]!, /^drac: 192\.0\.2\.1:7000 is not a loopback address/);
  assert.match(p[2]!, /^whoson: \[::\]:9876 is not a loopback address, and neither whoson\.allow_login nor whoson\.allow_query says who may call/);
  // with allow lists, the same listeners are fine
  assert.deepEqual(await problemsOf('[drac]\nlisten_udp = ["0.0.0.0:0"]\nlisten_tcp = []\nallow = ["192.0.2.0/28"]\n[whoson]\nlisten = ["[::]:9876"]\nallow_query = ["192.0.2.25/32"]\n'), []);
});

test('allow lists that let everyone create grants are refused; a bad CIDR and a bad address are named', async () => {
  const p = await problemsOf('[drac]\nallow = ["0.0.0.0/0", "192.0.2.7/24"]\nlisten_udp = ["localhost:1"]\n[whoson]\nlisten = "127.0.0.1:9876"\nallow_login = ["::/0"]\nallow_query = ["0.0.0.0/0"]\n');
  assert.ok(p.some((l) => /^drac\.allow: .*192\.0\.2\.7\/24.*host bits/.test(l)), p.join('\n'));
  assert.ok(p.some((l) => /^drac\.listen_udp\[0\]: "localhost:1": .*not an IP address literal/.test(l)), p.join('\n'));
  assert.ok(p.some((l) => /^whoson\.allow_login: ::\/0 allows every host on the Internet to create grants \(an open relay\)/.test(l)), p.join('\n'));
  assert.ok(!p.some((l) => /^whoson\.allow_query/.test(l)), 'QUERY from anyone reveals logins but creates no grant: allowed');
  const p2 = await problemsOf('[drac]\nallow = ["0.0.0.0/0"]\n');
  assert.deepEqual(p2, ['drac.allow: 0.0.0.0/0 allows every host on the Internet to create grants (an open relay); list your POP/IMAP servers\' addresses instead']);
});

test('allow_file: missing, empty, or with bad lines (each named with its line number)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rg-feeds-conf-'));
  try {
    const missing = await problemsOf(`[drac]\nallow_file = ${JSON.stringify(join(dir, 'nope'))}\n`);
    assert.match(missing[0]!, /drac\.allow_file: .*nope does not exist; create it \("netmask netaddr" per line, mask first\)/);
    const empty = join(dir, 'empty.allow');
    await writeFile(empty, '# nothing yet\n');
    assert.match((await problemsOf(`[drac]\nallow_file = ${JSON.stringify(empty)}\n`))[0]!, /allows nobody/);
    const bad = join(dir, 'bad.allow');
    await writeFile(bad, '255.255.255.0 192.0.2.0\n192.0.2.0 255.255.255.0\n0.0.0.0 0.0.0.0\n');
    const p = await problemsOf(`[drac]\nallow_file = ${JSON.stringify(bad)}\n`);
    assert.equal(p.length, 2, p.join('\n'));
    assert.match(p[0]!, /bad\.allow line 2: the netmask comes first in dracd\.allow: write "255\.255\.255\.0 192\.0\.2\.0"/);
    assert.match(p[1]!, /0\.0\.0\.0\/0 allows every host on the Internet/);
    const good = join(dir, 'good.allow');
    await writeFile(good, '255.255.255.0 192.0.2.0\n');
    // an allow file counts as an allow list for a non-loopback listener
    assert.deepEqual(await problemsOf(`[drac]\nallow_file = ${JSON.stringify(good)}\nlisten_udp = ["0.0.0.0:0"]\nlisten_tcp = []\n`), []);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('rpcbind = true needs an IPv4 listener (PMAP v2 publishes IPv4 ports)', async () => {
  const p = await problemsOf('[drac]\nlisten_udp = ["[::1]:0"]\nlisten_tcp = []\nrpcbind = true\n');
  assert.deepEqual(p, ['drac.rpcbind: the portmapper (PMAP v2) publishes IPv4 ports only; add an IPv4 address to listen_udp or listen_tcp, or set rpcbind = false']);
  assert.deepEqual(await problemsOf('[drac]\nrpcbind = true\n'), [], 'DRAC off: nothing to register');
});

test('`relaygate config check` reports the same problems and exits 78', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rg-feeds-check-'));
  try {
    const file = join(dir, 'relaygate.toml');
    await writeFile(file, '[whoson]\nlisten = ["0.0.0.0:9876"]\n');
    const main = join(resolve(import.meta.dirname, '../..'), 'src/main.ts');
    const r = await run(process.execPath, ['--import', import.meta.resolve('tsx'), main, 'config', 'check', file], { timeoutMs: 30_000 });
    assert.equal(r.code, 78, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /whoson: 0\.0\.0\.0:9876 is not a loopback address/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
