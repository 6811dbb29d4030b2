// The push client (src/push/sender.ts) against the real feed server (src/feeds/http-feed.ts) and real LMDB
// maps, over loopback sockets: queued logins arrive with their own login time, user and service; a server
// that is not there yet gets retries with back-off and the logins arrive once it listens; a wrong key is
// retried, never acknowledged; 413 halves the batch; two URLs each get every login and an entry stays
// until both have it; HTTPS is verified (push_ca trusted, an unknown certificate refused).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { Outbox, PushSender, backoffMs } from '../../src/push/index.ts';
import { startHttpFeed, type HttpFeed } from '../../src/feeds/http-feed.ts';
import { openLmdbAccessMap, type LmdbAccessMap } from '../../src/store/lmdb-map.ts';
import { CidrSet } from '../../src/net/index.ts';
import { freePort, pollFor } from '../helpers/proc.ts';
import { memoryLogger, selfSignedCert } from '../helpers/feed.ts';

const SECRET = 'sender-test-secret-0123456789abcdef0123456789';
const cleanup: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

async function scratch(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rg-sender-'));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function grantsMap(dir: string, name = 'map'): Promise<LmdbAccessMap> {
  const m = await openLmdbAccessMap({ path: join(dir, name), grace: 1800, mynetworks: new CidrSet([]), neverAuthorize: new CidrSet([]), clock: () => Date.now(), logger: memoryLogger().logger, verify: false });
  cleanup.push(() => m.close());
  return m;
}

async function feed(map: LmdbAccessMap, o: { port?: number; tls?: { cert: string; key: string } } = {}): Promise<HttpFeed> {
  const f = await startHttpFeed({ listen: `127.0.0.1:${o.port ?? 0}`, tlsCert: o.tls?.cert, tlsKey: o.tls?.key, keys: { pop1: SECRET }, map, grace: 1800, rateLimit: 1000, clock: () => Date.now(), logger: memoryLogger().logger });
  cleanup.push(() => f.stop());
  return f;
}

async function outbox(dir: string, urls: string[]): Promise<Outbox> {
  const box = await Outbox.open({ path: join(dir, 'outbox'), limit: 10_000, consumers: urls, clock: () => Date.now(), logger: memoryLogger().logger });
  cleanup.push(() => box.close());
  return box;
}

function sender(box: Outbox, url: string, log = memoryLogger(), o: { secret?: string; ca?: Buffer; grace?: number } = {}): PushSender {
  const s = new PushSender({ url, keyId: 'pop1', secret: o.secret ?? SECRET, ca: o.ca, outbox: box, grace: o.grace ?? 1800, clock: () => Date.now(), logger: log.logger, retryMinMs: 50, retryMaxMs: 200, timeoutMs: 5000 });
  s.start();
  cleanup.push(() => s.stop());
  return s;
}

test('back-off doubles from the minimum to the cap, with jitter between half and all of it', () => {
  assert.equal(backoffMs(1, 250, 30_000, () => 0), 125);
  assert.equal(backoffMs(1, 250, 30_000, () => 1), 250);
  assert.equal(backoffMs(3, 250, 30_000, () => 1), 1000);
  assert.equal(backoffMs(50, 250, 30_000, () => 1), 30_000);
  assert.equal(backoffMs(50, 250, 30_000, () => 0), 15_000);
});

test('queued logins arrive with their own login time, user and service, and leave the outbox', async () => {
  const dir = await scratch();
  const map = await grantsMap(dir);
  const f = await feed(map);
  const url = `http://127.0.0.1:${f.address.port}/v1/logins`;
  const box = await outbox(dir, [url]);
  const at = Date.now() - 60_000;
  const s = sender(box, url);
  await box.append([{ ip: '192.0.2.7', user: 'alice', service: 'pop3', at }, { ip: '2001:db8::7', at }]);
  const g = await pollFor(() => map.lookup('2001:db8::7'), 5000, 10);
  assert.ok(g, 'delivered');
  const a = await map.lookup('192.0.2.7');
  assert.equal(a?.user, 'alice');
  assert.equal(a?.service, 'pop3');
  assert.equal(a?.source, 'feed:pop1');
  assert.equal(a?.lastSeen, at, 'the grant counts from the login, not from the delivery');
  assert.equal(a?.expires, a!.lastSeen + 1800_000);
  await pollFor(() => (box.size === 0 ? true : undefined), 2000, 10);
  assert.equal(box.size, 0);
  assert.equal(s.counters.delivered, 2);
});

test('a server that is not listening yet: retries with back-off, then delivery once it is', async () => {
  const dir = await scratch();
  const map = await grantsMap(dir);
  const port = await freePort(['127.0.0.1']);
  const url = `http://127.0.0.1:${port}/v1/logins`;
  const box = await outbox(dir, [url]);
  const log = memoryLogger();
  sender(box, url, log);
  await box.append([{ ip: '192.0.2.8', user: 'bob', at: Date.now() }]);
  await pollFor(() => (log.events().filter((e) => e.event === 'push_failed').length >= 2 ? true : undefined), 5000, 10);
  const fails = log.events().filter((e) => e.event === 'push_failed');
  assert.ok(fails.length >= 2, 'retried');
  assert.match(String(fails[0]!.err), /ECONNREFUSED/);
  assert.equal(box.size, 1, 'kept while undelivered');
  await feed(map, { port });
  assert.ok(await pollFor(() => map.lookup('192.0.2.8'), 5000, 10), 'delivered after the server came');
  assert.ok(await pollFor(() => log.events().find((e) => e.event === 'push_recovered'), 2000, 10));
});

test('a wrong key is retried and never acknowledged', async () => {
  const dir = await scratch();
  const map = await grantsMap(dir);
  const f = await feed(map);
  const url = `http://127.0.0.1:${f.address.port}/v1/logins`;
  const box = await outbox(dir, [url]);
  const log = memoryLogger();
  sender(box, url, log, { secret: 'a-wrong-secret-that-is-long-enough-0123456' });
  await box.append([{ ip: '192.0.2.9', at: Date.now() }]);
  await pollFor(() => (log.events().filter((e) => e.event === 'push_failed' && e.status === 401).length >= 2 ? true : undefined), 5000, 10);
  assert.ok(log.events().filter((e) => e.event === 'push_failed' && e.status === 401).length >= 2);
  assert.equal(box.size, 1);
  assert.equal(await map.lookup('192.0.2.9'), undefined);
});

test('413 halves the batch until the server takes it', async () => {
  const dir = await scratch();
  const sizes: number[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const n = (JSON.parse(body) as { logins: unknown[] }).logins.length;
      sizes.push(n);
      if (n > 40) return res.writeHead(413).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ results: Array.from({ length: n }, () => ({ status: 'granted' })) }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/v1/logins`;
  const box = await outbox(dir, [url]);
  await box.append(Array.from({ length: 300 }, (_, i) => ({ ip: `10.1.${i >> 8}.${i & 255}`, at: Date.now() })));
  const s = sender(box, url);
  await pollFor(() => (box.size === 0 ? true : undefined), 10_000, 10);
  assert.equal(box.size, 0);
  assert.equal(s.counters.delivered, 300);
  assert.deepEqual(sizes.slice(0, 4), [300, 150, 75, 37], 'halved from the batch it tried');
  assert.ok(sizes.slice(4).every((n) => n <= 37));
});

test('two URLs each get every login; an entry stays until both have it', async () => {
  const dir = await scratch();
  const m1 = await grantsMap(dir, 'm1');
  const m2 = await grantsMap(dir, 'm2');
  const f1 = await feed(m1);
  const port2 = await freePort(['127.0.0.1']);
  const u1 = `http://127.0.0.1:${f1.address.port}/v1/logins`;
  const u2 = `http://127.0.0.1:${port2}/v1/logins`;
  const box = await outbox(dir, [u1, u2]);
  sender(box, u1);
  sender(box, u2);
  await box.append([{ ip: '192.0.2.30', at: Date.now() }]);
  assert.ok(await pollFor(() => m1.lookup('192.0.2.30'), 5000, 10));
  assert.equal(box.size, 1, 'the second URL is down: the entry stays');
  await feed(m2, { port: port2 });
  assert.ok(await pollFor(() => m2.lookup('192.0.2.30'), 5000, 10));
  await pollFor(() => (box.size === 0 ? true : undefined), 2000, 10);
  assert.equal(box.size, 0);
});

test('HTTPS: delivered when push_ca trusts the certificate, refused (and retried) when nothing does', async () => {
  const dir = await scratch();
  const map = await grantsMap(dir);
  const tls = await selfSignedCert(dir, '127.0.0.1');
  const f = await feed(map, { tls });
  const url = `https://127.0.0.1:${f.address.port}/v1/logins`;
  const untrustedDir = await scratch();
  const untrustedBox = await outbox(untrustedDir, [url]);
  const log = memoryLogger();
  sender(untrustedBox, url, log);
  await untrustedBox.append([{ ip: '192.0.2.41', at: Date.now() }]);
  const fail = await pollFor(() => log.events().find((e) => e.event === 'push_failed'), 5000, 10);
  assert.match(String(fail?.err), /certificate/i);
  assert.equal(await map.lookup('192.0.2.41'), undefined);
  const box = await outbox(dir, [url]);
  sender(box, url, memoryLogger(), { ca: await readFile(tls.cert) });
  await box.append([{ ip: '192.0.2.40', user: 'tls', at: Date.now() }]);
  assert.equal((await pollFor(() => map.lookup('192.0.2.40'), 5000, 10))?.user, 'tls');
});
