// The signed HTTP feed server (src/feeds/http-feed.ts) over real sockets on loopback, with a real LMDB access
// map and curl as the client: grants with source feed:<id>; a batch with per-login results (normalized
// IPs, bad IPs and mynetworks refused per login, ttl capped at grace, stale `at` refused, a username with
// control characters dropped); 401 for forged, unknown-key, old-timestamp and replayed requests with one
// indistinguishable body and the reason in the log; 400, 404, 405, 413, 415, 429 and 503 (a store that
// fails); HTTPS with a self-signed certificate made by openssl and trusted with --cacert (and refused
// without it). Configuration checks: short secrets, plain HTTP off loopback, tls pair, secrets redacted.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openLmdbAccessMap, type LmdbAccessMap } from '../../src/store/lmdb-map.ts';
import { CidrSet } from '../../src/net/index.ts';
import { startHttpFeed, MAX_BODY, type HttpFeed } from '../../src/feeds/http-feed.ts';
import { parseConfig } from '../../src/config/load.ts';
import { showConfig } from '../../src/config/show.ts';
import { validateConfig } from '../../src/config/validate.ts';
import { RelaygateError } from '../../src/errors.ts';
import { curlFeed, memoryLogger, selfSignedCert, signedHeaders, writeBody } from '../helpers/feed.ts';
import { parse as tomlParse } from 'smol-toml';

const SECRET = 'feed-test-secret-0123456789abcdef0123456789';
const GRACE = 1800;
let dir = '';
let map: LmdbAccessMap;
let feed: HttpFeed;
let url = '';
const log = memoryLogger();

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rg-http-feed-'));
  map = await openLmdbAccessMap({
    path: join(dir, 'map'),
    grace: GRACE,
    mynetworks: new CidrSet(['127.0.0.0/8']),
    neverAuthorize: new CidrSet(['0.0.0.0/8']),
    clock: () => Date.now(),
    logger: log.logger,
    verify: false,
  });
  feed = await startHttpFeed({
    listen: '127.0.0.1:0',
    keys: { pop1: SECRET, burst: SECRET.toUpperCase() },
    map,
    grace: GRACE,
    rateLimit: 20,
    clock: () => Date.now(),
    logger: log.logger,
  });
  url = `http://127.0.0.1:${feed.address.port}/v1/logins`;
});

after(async () => {
  await feed?.stop();
  await map?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function post(body: string, o: { keyId?: string; secret?: string; now?: number; nonce?: string; headers?: Record<string, string> } = {}) {
  const h = signedHeaders(o.keyId ?? 'pop1', o.secret ?? SECRET, body, { now: o.now, nonce: o.nonce });
  return curlFeed(url, { headers: { ...h, ...o.headers }, body });
}

function lastEvent(event: string, pred: (e: Record<string, unknown>) => boolean = () => true): Record<string, unknown> | undefined {
  return log.events().filter((e) => e.event === event && pred(e)).at(-1);
}

test('one signed login becomes a grant with source feed:<id>; the request is logged', async () => {
  const r = await post(JSON.stringify({ ip: '192.0.2.7', user: 'alice', service: 'pop3' }));
  assert.equal(r.status, 200, r.body);
  const res = (r.json as { results: Array<Record<string, unknown>> }).results;
  assert.equal(res.length, 1);
  assert.equal(res[0]!.ip, '192.0.2.7');
  assert.equal(res[0]!.status, 'granted');
  const g = await map.lookup('192.0.2.7');
  assert.ok(g, 'grant recorded');
  assert.equal(g.source, 'feed:pop1');
  assert.equal(g.user, 'alice');
  assert.equal(g.service, 'pop3');
  assert.ok(Math.abs(g.expires - (Date.now() + GRACE * 1000)) < 10_000);
  assert.equal(Date.parse(res[0]!.expires as string), g.expires);
  const ev = lastEvent('feed_accepted');
  assert.equal(ev?.feeder, 'pop1');
  assert.equal(ev?.logins, 1);
  assert.equal(ev?.granted, 1);
  assert.equal(ev?.remote_ip, '127.0.0.1');
});

test('a batch gets per-login results in order: normalized IPs, bad_ip, mynetworks, ttl cap, stale at, dropped user', async () => {
  const twoHoursAgo = new Date(Date.now() - 7200_000).toISOString();
  const body = JSON.stringify({
    logins: [
      { ip: '::ffff:192.0.2.9', user: 'bob' },
      { ip: '2001:DB8:0:0::1', user: 'carol', service: 'imap', ttl: 600 },
      { ip: 'unknown', user: 'x' },
      { ip: '127.0.0.5', user: 'local' },
      { ip: '198.51.100.4', ttl: 999_999 },
      { ip: '198.51.100.5', at: twoHoursAgo },
      { ip: '198.51.100.6', user: 'evil\nuser=<root>' },
      { ip: '198.51.100.7', user: null, at: new Date(Date.now() + 3600_000).toISOString() },
    ],
  });
  const r = await post(body);
  assert.equal(r.status, 200, r.body);
  const res = (r.json as { results: Array<Record<string, unknown>> }).results;
  assert.deepEqual(
    res.map((x) => [x.ip, x.status, x.reason ?? null]),
    [
      ['192.0.2.9', 'granted', null],
      ['2001:db8::1', 'granted', null],
      ['unknown', 'refused', 'bad_ip'],
      ['127.0.0.5', 'refused', 'mynetworks'],
      ['198.51.100.4', 'granted', null],
      ['198.51.100.5', 'refused', 'stale'],
      ['198.51.100.6', 'granted', null],
      ['198.51.100.7', 'granted', null],
    ],
  );
  const carol = await map.lookup('2001:db8::1');
  assert.ok(carol && Math.abs(carol.expires - (Date.now() + 600_000)) < 10_000, 'a shorter ttl is honoured');
  assert.equal(res[4]!.ttl_capped, true);
  const capped = await map.lookup('198.51.100.4');
  assert.ok(capped && capped.expires <= Date.now() + GRACE * 1000 + 1000, 'ttl capped at grace');
  const dropped = await map.lookup('198.51.100.6');
  assert.equal(dropped?.user, null, 'a username with control characters is not trusted');
  assert.equal(typeof res[6]!.user_dropped, 'string');
  const future = await map.lookup('198.51.100.7');
  assert.ok(future && future.expires <= Date.now() + GRACE * 1000 + 1000, 'a login "in the future" counts as now');
  assert.equal(await map.lookup('198.51.100.5'), undefined);
  assert.equal(await map.lookup('127.0.0.5'), undefined);
  assert.equal(lastEvent('feed_accepted')?.refused, 3);
});

test('forged, unknown-key, old and replayed requests all get the same 401; the log says which', async () => {
  const body = JSON.stringify({ ip: '203.0.113.50', user: 'mallory' });
  const forged = await post(body, { secret: 'not-the-secret-but-long-enough-0123456789' });
  const unknown = await post(body, { keyId: 'pop9' });
  const old = await post(body, { now: Date.now() - 120_000 });
  const nonce = 'replay-nonce-0123456789abcdef';
  const first = await post(JSON.stringify({ ip: '203.0.113.51' }), { nonce });
  assert.equal(first.status, 200, first.body);
  const h = signedHeaders('pop1', SECRET, JSON.stringify({ ip: '203.0.113.52' }), { nonce: 'replay-2-0123456789abcdef' });
  const original = await curlFeed(url, { headers: h, body: JSON.stringify({ ip: '203.0.113.52' }) });
  assert.equal(original.status, 200);
  await map.delete('203.0.113.52');
  const replay = await curlFeed(url, { headers: h, body: JSON.stringify({ ip: '203.0.113.52' }) });
  for (const [name, r] of [['forged', forged], ['unknown key', unknown], ['old timestamp', old], ['replay', replay]] as const) {
    assert.equal(r.status, 401, `${name}: ${r.body}`);
    assert.deepEqual(r.json, { error: 'unauthorized' }, name);
  }
  assert.equal(await map.lookup('203.0.113.50'), undefined, 'no grant from a refused request');
  assert.equal(await map.lookup('203.0.113.52'), undefined, 'the replay did not re-create the deleted grant');
  const reasons = log.events().filter((e) => e.event === 'feed_refused' && e.status === 401).map((e) => e.reason);
  for (const why of ['bad_signature', 'unknown_key', 'stale_timestamp', 'replay']) assert.ok(reasons.includes(why), `logged ${why}: ${JSON.stringify(reasons)}`);
  assert.ok(!JSON.stringify(log.events()).includes(SECRET), 'the secret never appears in the log');
});

test('bad requests: 400 bad JSON / unknown field / bad service, 404, 405, 415, 413 — each logged', async () => {
  const badJson = await post('{"ip": ');
  assert.equal(badJson.status, 400);
  const unknownField = await post(JSON.stringify({ ip: '192.0.2.1', usr: 'typo' }));
  assert.equal(unknownField.status, 400);
  assert.match(String((unknownField.json as { detail: string }).detail), /usr/);
  const badService = await post(JSON.stringify({ ip: '192.0.2.1', service: 'pop3\nx' }));
  assert.equal(badService.status, 400);
  const emptyBatch = await post(JSON.stringify({ logins: [] }));
  assert.equal(emptyBatch.status, 400);
  const tooMany = await post(JSON.stringify({ logins: Array.from({ length: 1001 }, (_, i) => ({ ip: `10.0.${i >> 8}.${i & 255}` })) }));
  assert.equal(tooMany.status, 400);
  const body = JSON.stringify({ ip: '192.0.2.1' });
  const notFound = await curlFeed(url.replace('/v1/logins', '/v1/other'), { headers: signedHeaders('pop1', SECRET, body, { path: '/v1/other' }), body });
  assert.equal(notFound.status, 404);
  const get = await curlFeed(url, { method: 'GET' });
  assert.equal(get.status, 405);
  const text = await curlFeed(url, { headers: { ...signedHeaders('pop1', SECRET, body), 'content-type': 'text/plain' }, body });
  assert.equal(text.status, 415);
  const big = await writeBody(dir, 'big.json', JSON.stringify({ ip: '192.0.2.1', user: 'x'.repeat(MAX_BODY) }));
  const large = await curlFeed(url, { headers: { 'content-type': 'application/json' }, bodyFile: big });
  assert.equal(large.status, 413);
  const statuses = log.events().filter((e) => e.event === 'feed_refused').map((e) => e.status);
  for (const s of [400, 404, 405, 413, 415]) assert.ok(statuses.includes(s), `logged ${s}`);
});

test('429 once a feeder exceeds its rate limit (20/s here); other feeders are not affected', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const send = (keyId: string, secret: string, i: number) =>
    new Promise<number>((done, fail) => {
      const body = JSON.stringify({ ip: `198.18.0.${i + 1}` });
      const req = http.request(url, { method: 'POST', agent, headers: signedHeaders(keyId, secret, body) }, (res) => {
        res.resume();
        res.on('end', () => done(res.statusCode ?? 0));
      });
      req.on('error', fail);
      req.end(body);
    });
  try {
    const codes = await Promise.all(Array.from({ length: 40 }, (_, i) => send('burst', SECRET.toUpperCase(), i)));
    assert.ok(codes.includes(429), `some 429 among ${codes.join(',')}`);
    assert.ok(codes.filter((c) => c === 200).length >= 20, 'the first second\'s worth passes');
    assert.ok(codes.every((c) => c === 200 || c === 429));
    assert.equal(await send('pop1', SECRET, 200), 200, 'pop1 has its own bucket');
    assert.ok(lastEvent('feed_refused', (e) => e.status === 429 && e.feeder === 'burst'));
  } finally {
    agent.destroy();
  }
});

test('a failing store answers 503 (temporary), never 200', async () => {
  const broken = await openLmdbAccessMap({ path: join(dir, 'broken'), grace: GRACE, mynetworks: new CidrSet([]), neverAuthorize: new CidrSet([]), clock: () => Date.now(), logger: log.logger, verify: false });
  await broken.close(); // every write now fails with RG_ERR_STORE_IO
  const f = await startHttpFeed({ listen: '127.0.0.1:0', keys: { pop1: SECRET }, map: broken, grace: GRACE, rateLimit: 10, clock: () => Date.now(), logger: log.logger });
  try {
    const body = JSON.stringify({ ip: '192.0.2.99' });
    const r = await curlFeed(`http://127.0.0.1:${f.address.port}/v1/logins`, { headers: signedHeaders('pop1', SECRET, body), body, extra: ['-D', '-'] });
    assert.equal(r.status, 503, r.body);
    assert.match(r.body, /retry-after: 5/i);
    assert.ok(lastEvent('feed_store_failed'));
  } finally {
    await f.stop();
  }
});

test('HTTPS with a self-signed certificate (openssl): trusted with --cacert, refused without', async () => {
  const tls = await selfSignedCert(dir, '127.0.0.1');
  const f = await startHttpFeed({ listen: '127.0.0.1:0', tlsCert: tls.cert, tlsKey: tls.key, keys: { pop1: SECRET }, map, grace: GRACE, rateLimit: 10, clock: () => Date.now(), logger: log.logger });
  try {
    const u = `https://127.0.0.1:${f.address.port}/v1/logins`;
    const body = JSON.stringify({ ip: '192.0.2.77', user: 'tls-user' });
    const ok = await curlFeed(u, { headers: signedHeaders('pop1', SECRET, body), body, cacert: tls.cert });
    assert.equal(ok.status, 200, ok.body);
    assert.equal((await map.lookup('192.0.2.77'))?.user, 'tls-user');
    const untrusted = await curlFeed(u, { headers: signedHeaders('pop1', SECRET, body), body });
    assert.equal(untrusted.status, 0, 'curl refuses an unknown certificate');
    assert.match(untrusted.body, /certificate/i);
    const plain = await curlFeed(u.replace('https:', 'http:'), { headers: signedHeaders('pop1', SECRET, body), body });
    assert.notEqual(plain.status, 200, 'no plain HTTP on the TLS port');
    // SIGHUP path: a new pair on disk is picked up by reloadTls(); the old CA no longer verifies
    const oldCa = join(dir, 'old-ca.pem');
    await copyFile(tls.cert, oldCa);
    await selfSignedCert(dir, '127.0.0.1');
    await f.reloadTls();
    const renewed = await curlFeed(u, { headers: signedHeaders('pop1', SECRET, body), body, cacert: tls.cert });
    assert.equal(renewed.status, 200, renewed.body);
    assert.equal((await curlFeed(u, { headers: signedHeaders('pop1', SECRET, body), body, cacert: oldCa })).status, 0);
    assert.ok(lastEvent('feed_tls_reloaded'));
  } finally {
    await f.stop();
  }
});

async function problems(toml: string): Promise<string[]> {
  try {
    const cfg = parseConfig(tomlParse(toml) as Record<string, unknown>, toml, 'test.toml');
    await validateConfig({ config: cfg, file: 'test.toml', raw: {}, text: toml });
    return [];
  } catch (err) {
    if (err instanceof RelaygateError) return [err.message, ...err.details];
    throw err;
  }
}

test('config: short secrets, three secrets, bad ids, plain HTTP off loopback, half a TLS pair, push without key are refused', async () => {
  const long = 'a'.repeat(64);
  const all = (await problems(`push_to = ["ftp://192.0.2.1/x"]\npush_key = "short"\n[feed]\nlisten = "192.0.2.1:8473"\ntls_key = "/nonexistent.pem"\nkeys = { pop1 = "short", "bad id" = "${long}", pop3 = ["${long}", "${long}", "${long}"] }\n`)).join('\n');
  assert.match(all, /feed\.keys\.pop1.*at least 32 bytes/);
  assert.match(all, /feeder id/);
  assert.match(all, /at most two secrets/);
  assert.match(all, /push_key.*at least 32 bytes/);
  assert.ok(!all.includes(long) && !all.includes('"short"'), 'secrets are not echoed');
  const sem = (await problems(`push_to = ["ftp://192.0.2.1/x", "http://user:pw@192.0.2.2/v1/logins"]\n[feed]\nlisten = "192.0.2.1:8473"\ntls_key = "/nonexistent.pem"\nkeys = { pop1 = "${long}" }\n`)).join('\n');
  assert.match(sem, /push_to\[0\].*only http:\/\/ and https:\/\//);
  assert.match(sem, /push_to\[1\].*credentials/);
  assert.match(sem, /push_key_id: push_to needs/);
  assert.match(sem, /push_key: push_to needs/);
  assert.match(sem, /tls_cert and tls_key go together/);
  assert.match(sem, /not a loopback address and the feed has no TLS/);
  assert.deepEqual(await problems(`[feed]\nlisten = "192.0.2.1:8473"\nallow_plain_http = true\nkeys = { pop1 = "${long}" }\n`), [], 'explicitly allowed');
  assert.deepEqual(await problems(`[feed]\nlisten = "127.0.0.1:8473"\nkeys = { pop1 = "${long}", pop2 = ["${long}", "${'b'.repeat(32)}"] }\n`), [], 'loopback plain HTTP is fine');
  assert.match((await problems(`[feed]\nlisten = "127.0.0.1:8473"\n`)).join('\n'), /no feeder can authenticate/);
  assert.match((await problems(`push_key_id = "pop1"\n`)).join('\n'), /applies only with push_to/);
});

test('config show never prints push_key or feed secrets', () => {
  const long = 's'.repeat(48);
  const toml = `push_to = ["https://192.0.2.25:8473/v1/logins"]\npush_key_id = "pop1"\npush_key = "${long}"\n[feed]\nlisten = "127.0.0.1:8473"\nkeys = { pop1 = "${long}x", pop2 = ["${long}y", "${long}z"] }\n`;
  const shown = showConfig(parseConfig(tomlParse(toml) as Record<string, unknown>, toml, 't.toml'));
  assert.ok(!shown.includes(long), shown);
  assert.match(shown, /push_key = "\[redacted\]"/);
  assert.match(shown, /feed\.keys = \{ pop1 = "\[redacted\]", pop2 = "\[redacted\]" \}/);
  assert.match(shown, /push_key_id = "pop1"/);
  const log = memoryLogger();
  log.logger.info({ push_key: long, settings: { push_key: long } }, 'x');
  assert.ok(!JSON.stringify(log.events()).includes(long), 'the logger redacts push_key');
});
