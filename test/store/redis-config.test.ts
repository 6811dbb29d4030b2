// `[store]` for Redis, checked by the same validateConfig that `relaygate run` and `relaygate config check`
// run: one row per rule (what the file says → the problem it must produce, or none). The security row:
// a Redis off loopback without a password is refused (whoever reaches it could grant relaying).
// Also: what openAccessMap is handed for a config, and that `config show` hides the URL's password.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigText, parseConfig } from '../../src/config/load.ts';
import { validateConfig } from '../../src/config/validate.ts';
import { showConfig } from '../../src/config/show.ts';
import { isRelaygateError } from '../../src/errors.ts';
import { accessMapOptions, isLoopbackHost, storeDescription } from '../../src/store/index.ts';
import { CidrSet } from '../../src/net/index.ts';
import { silentLogger } from '../../src/log/logger.ts';

async function problems(toml: string): Promise<string[]> {
  const text = `${toml}\n`;
  let config;
  try {
    config = parseConfig(parseConfigText(text, 't.toml'), text, 't.toml');
    await validateConfig({ config, text, file: 't.toml' } as Parameters<typeof validateConfig>[0]);
    return [];
  } catch (err) {
    if (!isRelaygateError(err)) throw err;
    return err.details.length > 0 ? [...err.details] : [err.message];
  }
}

const ROWS: Array<[what: string, toml: string, expect: RegExp | null]> = [
  ['loopback without password', '[store]\ntype = "redis"\nurl = "redis://127.0.0.1:6379/0"', null],
  ['localhost and ::1 count as loopback', '[store]\ntype = "redis"\nurl = "redis://[::1]:6379"', null],
  ['remote with password', '[store]\ntype = "redis"\nurl = "redis://:pw@10.0.0.5:6379"', null],
  ['remote ACL user over TLS', '[store]\ntype = "redis"\nurl = "rediss://relaygate:pw@10.0.0.5:6380/2"', null],
  ['remote, password passed through', '[store]\ntype = "redis"\nurl = "redis://10.0.0.5"\nredis = { password = "pw" }', null],
  ['remote without password', '[store]\ntype = "redis"\nurl = "redis://10.0.0.5:6379"', /^store\.url \(line 3\): Redis on 10\.0\.0\.5 \(not loopback\) without a password: .*redis:\/\/:PASSWORD@host:port/],
  ['a remote cluster node without password', '[store]\ntype = "redis"\nurl = "redis://127.0.0.1:7000"\ncluster = true\nkey_prefix = "{rg}:"\nnodes = ["10.0.0.6:7000"]', /Redis on 10\.0\.0\.6 \(not loopback\) without a password/],
  ['redis without url', '[store]\ntype = "redis"', /^store\.url: type = "redis" needs url = "redis:\/\//],
  ['wrong scheme', '[store]\ntype = "redis"\nurl = "http://127.0.0.1:6379"', /scheme http: is not redis: or rediss:/],
  ['not a URL', '[store]\ntype = "redis"\nurl = "127.0.0.1:6379"', /is not a URL|scheme 127\.0\.0\.1: is not redis:/],
  ['database path', '[store]\ntype = "redis"\nurl = "redis://127.0.0.1/db1"', /must be a database number/],
  ['path with redis', '[store]\ntype = "redis"\nurl = "redis://127.0.0.1"\npath = "/var/lib/x"', /^store\.path \(line 4\): applies only with type = "lmdb"/],
  ['url with lmdb', '[store]\nurl = "redis://127.0.0.1"', /^store\.url \(line 2\): applies only with type = "redis"/],
  ['cluster without a hash tag', '[store]\ntype = "redis"\nurl = "redis://127.0.0.1:7000"\ncluster = true', /^store\.key_prefix: in a cluster it must contain a hash tag .*"\{relaygate\}:"/],
  ['cluster with a hash tag', '[store]\ntype = "redis"\nurl = "redis://127.0.0.1:7000"\ncluster = true\nkey_prefix = "{relaygate}:"', null],
  ['cluster and sentinel', '[store]\ntype = "redis"\nurl = "redis://127.0.0.1:26379"\ncluster = true\nkey_prefix = "{r}:"\nsentinel_master = "m"', /cannot be combined with sentinel_master/],
  ['sentinel with more sentinels', '[store]\ntype = "redis"\nurl = "redis://:pw@127.0.0.1:26379/1"\nsentinel_master = "mymaster"\nnodes = ["127.0.0.2:26379", "redis://127.0.0.3:26380"]', null],
  ['nodes without a topology', '[store]\ntype = "redis"\nurl = "redis://127.0.0.1"\nnodes = ["127.0.0.2:6379"]', /^store\.nodes \(line 4\): applies only with cluster = true or sentinel_master/],
  ['a bad node', '[store]\ntype = "redis"\nurl = "redis://127.0.0.1"\nsentinel_master = "m"\nnodes = ["a b:1"]', /^store\.nodes\[0\] \(line 5\): "a b:1" is not "host:port"/],
  ['passthrough cannot set the url', '[store]\ntype = "redis"\nurl = "redis://127.0.0.1"\nredis = { url = "redis://10.9.9.9" }', /^store\.redis\.url: set by relaygate/],
  ['passthrough cannot re-enable the offline queue', '[store]\ntype = "redis"\nurl = "redis://127.0.0.1"\nredis = { disableOfflineQueue = false }', /disableOfflineQueue: must stay true/],
  ['timeout bounds', '[store]\ntype = "redis"\nurl = "redis://127.0.0.1"\ntimeout = "2m"', /store\.timeout/],
  ['unknown store type', '[store]\ntype = "memcached"', /store\.type/],
];

for (const [what, toml, expect] of ROWS) {
  test(`[store] redis config: ${what}`, async () => {
    const got = await problems(toml);
    if (expect === null) assert.deepEqual(got, [], toml);
    else assert.ok(got.some((p) => expect.test(p)), `${toml}\n→ ${JSON.stringify(got, null, 1)}`);
    for (const p of got) assert.ok(!p.includes(':pw@'), 'no password in a problem');
  });
}

test('isLoopbackHost: 127/8, ::1 and localhost only', () => {
  for (const h of ['127.0.0.1', '127.9.8.7', '::1', '[::1]', 'localhost', 'LOCALHOST']) assert.equal(isLoopbackHost(h), true, h);
  for (const h of ['10.0.0.1', '::ffff:10.0.0.1', '0.0.0.0', 'redis.example', '128.0.0.1', '::2', 'localhost.evil.example']) assert.equal(isLoopbackHost(h), false, h);
});

test('accessMapOptions hands the redis settings through; config show and the start-up description hide the password', () => {
  const text = '[store]\ntype = "redis"\nurl = "redis://:hunter2@127.0.0.1:6390/3"\nkey_prefix = "x:"\ntimeout = 3\nnode_name = "mx1"\nredis = { password = "hunter2", socket = { keepAlive = true } }\n';
  const config = parseConfig(parseConfigText(text, 't.toml'), text, 't.toml');
  const env = { mynetworks: new CidrSet([]), neverAuthorize: new CidrSet([]), clock: () => 0, logger: silentLogger() };
  const o = accessMapOptions(config, env);
  assert.equal(o.type, 'redis');
  if (o.type !== 'redis') return;
  assert.deepEqual(
    JSON.parse(JSON.stringify({ url: o.url, keyPrefix: o.keyPrefix, timeoutMs: o.timeoutMs, nodeName: o.nodeName, cluster: o.cluster, clientOptions: o.clientOptions })),
    { url: 'redis://:hunter2@127.0.0.1:6390/3', keyPrefix: 'x:', timeoutMs: 3000, nodeName: 'mx1', cluster: false, clientOptions: { password: 'hunter2', socket: { keepAlive: true } } },
  );
  assert.equal(storeDescription(config), 'redis:redis://:***@127.0.0.1:6390/3');
  const shown = showConfig(config);
  assert.ok(!shown.includes('hunter2'), shown);
  assert.match(shown, /store\.url = "redis:\/\/:\*\*\*@127\.0\.0\.1:6390\/3"/);
  const lmdb = parseConfig({}, '', 'defaults');
  assert.equal(accessMapOptions(lmdb, env).type, 'lmdb');
  assert.match(storeDescription(lmdb), /^lmdb:\/.*var\/relaygate\/map$/);
});
