// The Redis access map against a real redis-server (Debian package; a private instance on a free loopback
// port, killed at the end): the shared contract first, then what only a shared network store has —
// Redis going away and coming back (lookups fail temporary, never permit, and recover), a hung Redis
// (the deadline answers), two SMTP nodes on one Redis (a grant recorded by one is seen by the other, and
// concurrent logins of one IP from both lose nothing), hostile values at relaygate's keys, the format
// marker, passwords, per-node source state and PX expiry.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createClient } from 'redis';
import { runAccessMapContract, captureLogger, T0, GRACE, type ContractEnv } from './contract.ts';
import { openAccessMap, startSweeper, type AccessMap, type RedisAccessMap, type OpenAccessMapOptions } from '../../src/store/index.ts';
import { decodeRedisGrant, REDIS_SWEEP_CHUNK } from '../../src/store/redis-map.ts';
import { CidrSet } from '../../src/net/index.ts';
import { manualClock } from '../../src/clock.ts';
import { silentLogger, type Logger } from '../../src/log/logger.ts';
import { isRelaygateError } from '../../src/errors.ts';
import { createEngine } from '../../src/engine/index.ts';
import { startRedis, type RedisServer } from '../helpers/redis.ts';
import { freePort } from '../helpers/proc.ts';

const G = GRACE * 1000;
let redis: RedisServer;
let prefixNo = 0;

before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis?.stop();
});

const isIo = (e: unknown): boolean => isRelaygateError(e) && e.code === 'RG_ERR_STORE_IO';
const isOpen = (re: RegExp) => (e: unknown): boolean => isRelaygateError(e) && e.code === 'RG_ERR_STORE_OPEN' && re.test(e.message);

/** Every key under `prefix`, deleted (SCAN, not KEYS: the same code would be fine on a big server). */
async function dropPrefix(url: string, prefix: string): Promise<void> {
  const c = createClient({ url, socket: { reconnectStrategy: false } });
  c.on('error', () => undefined);
  await c.connect();
  try {
    for await (const keys of c.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) if (keys.length > 0) await c.del(keys);
  } finally {
    c.destroy();
  }
}

runAccessMapContract('redis', async (env: ContractEnv) => {
  const keyPrefix = `contract${++prefixNo}:`;
  return {
    open: () => openAccessMap({ type: 'redis', url: redis.url, keyPrefix, nodeName: 'node-a', ...env }),
    destroy: () => dropPrefix(redis.url, keyPrefix),
    sweepExamined: (map: AccessMap) => (map as RedisAccessMap).lastSweepExamined,
  };
});

function options(url: string, over: Partial<Omit<OpenAccessMapOptions & { type: 'redis' }, 'type'>> = {}): OpenAccessMapOptions & { type: 'redis' } {
  return {
    type: 'redis',
    url,
    keyPrefix: `t${++prefixNo}:`,
    grace: GRACE,
    mynetworks: new CidrSet(['127.0.0.0/8']),
    neverAuthorize: new CidrSet(['0.0.0.0/8']),
    clock: manualClock(T0),
    logger: silentLogger(),
    timeoutMs: 400,
    ...over,
  };
}

/** The engine the daemon builds, deciding a RCPT for `ip` against `map`. */
async function rcptVerdict(map: AccessMap, ip: string, clock: () => number, saslUser?: string, logger: Logger = silentLogger()) {
  const engine = await createEngine({
    relayRestrictions: ['permit_mynetworks', 'permit_sasl_authenticated', 'permit_pop_before_smtp', 'reject_unauth_destination'],
    senderRestrictions: [],
    mynetworks: new CidrSet(['127.0.0.0/8']),
    mydestination: ['localhost'],
    relayDomains: [],
    senderLoginMaps: [],
    grants: map,
    clock,
    logger,
  });
  try {
    return await engine.decide({ stage: 'rcpt', clientIp: ip, sender: 'a@example.org', recipient: 'b@remote.example', ...(saslUser === undefined ? {} : { saslUser }) });
  } finally {
    await engine.close();
  }
}

describe('redis access map: Redis down, hung and back', () => {
  test('a restart of Redis mid-test: lookups fail temporary (451 4.3.0, never a permit), then recover with the grants', async () => {
    // AOF with fsync always: what a production Redis keeping grants across its own restart looks like.
    const r = await startRedis({ appendonly: true });
    const { logger, lines } = captureLogger();
    const clock = manualClock(T0);
    const map = await openAccessMap(options(r.url, { logger, clock }));
    try {
      await map.record({ ip: '192.0.2.7', user: 'alice', source: 'dovecot' });
      assert.equal((await rcptVerdict(map, '192.0.2.7', clock)).action, 'permit');

      await r.kill();
      await assert.rejects(map.lookup('192.0.2.7'), isIo, 'lookup while Redis is down');
      await assert.rejects(map.record({ ip: '192.0.2.8', source: 'dovecot' }), isIo, 'record while down: the source must retry');
      await assert.rejects(map.stats(), isIo);
      const down = await rcptVerdict(map, '192.0.2.7', clock);
      assert.equal(down.action, 'defer', 'a broken store is a temporary failure');
      assert.match(`${down.code} ${down.dsn} ${down.text}`, /^451 4\.3\.0 .*Temporary lookup failure/);
      assert.equal((await rcptVerdict(map, '192.0.2.99', clock, 'bob')).action, 'permit', 'SASL users relay on: their decision never asks the store');
      assert.ok(lines.some((l) => l.event === 'store_unavailable' && l.level === 'warn'), 'the outage is logged once, at warn');
      assert.equal(lines.filter((l) => l.event === 'store_unavailable').length, 1, 'not once per command');

      await r.start();
      // Reconnects by itself (back-off ≤ 2 s); bounded wait.
      let back: Awaited<ReturnType<AccessMap['lookup']>> | 'error' = 'error';
      for (let i = 0; i < 100 && back === 'error'; i++) {
        back = await map.lookup('192.0.2.7').catch(() => 'error' as const);
        if (back === 'error') await new Promise((res) => setTimeout(res, 100));
      }
      assert.ok(back !== 'error', 'lookups work again after Redis is back');
      assert.equal(back?.user, 'alice', 'the grant survived the Redis restart (AOF)');
      // The restarted Redis has no script cache: EVALSHA → NOSCRIPT → EVAL, transparently.
      assert.equal((await map.record({ ip: '192.0.2.7', source: 'dovecot' })).recorded, true);
      assert.equal((await map.lookup('192.0.2.7'))?.count, 2);
      assert.equal((await rcptVerdict(map, '192.0.2.7', clock)).action, 'permit');
      assert.ok(lines.some((l) => l.event === 'store_available'), 'the recovery is logged');
    } finally {
      await map.close();
      await r.stop();
    }
  });

  test('a hung Redis (SIGSTOP): every operation answers within its deadline with RG_ERR_STORE_IO; recovers on SIGCONT', async () => {
    const r = await startRedis();
    const clock = manualClock(T0);
    const map = await openAccessMap(options(r.url, { clock, timeoutMs: 300 }));
    try {
      await map.record({ ip: '192.0.2.9', source: 't' });
      r.pause();
      const started = Date.now();
      await assert.rejects(map.lookup('192.0.2.9'), (e: unknown) => isIo(e) && /no answer from Redis within 300 ms/.test((e as Error).message));
      await assert.rejects(map.recordMany([{ ip: '192.0.2.10', source: 't' }], { 'tail:/x': { offset: 5 } }), isIo);
      const verdict = await rcptVerdict(map, '192.0.2.9', clock);
      assert.equal(verdict.action, 'defer');
      // Not a speed assertion: only that nothing waited for Redis to come back (it never does while stopped).
      assert.ok(Date.now() - started < 20_000);
      r.resume();
      let ok = false;
      for (let i = 0; i < 100 && !ok; i++) {
        ok = (await map.lookup('192.0.2.9').catch(() => undefined)) !== undefined;
        if (!ok) await new Promise((res) => setTimeout(res, 100));
      }
      assert.ok(ok, 'lookups answer again after SIGCONT');
      // A batch that timed out may still have reached Redis before it froze: then it committed whole (its
      // grant with its position), never half. The source retries it either way: at least once, never lost.
      const state = await map.getState('tail:/x');
      const grant = await map.lookup('192.0.2.10');
      assert.equal(state === undefined, grant === undefined, `grant and position commit together (state ${JSON.stringify(state)})`);
    } finally {
      r.resume();
      await map.close();
      await r.stop();
    }
  });

  test('opening fails with RG_ERR_STORE_OPEN when Redis does not answer, and the password is not in the message', async () => {
    const port = await freePort(['127.0.0.1']);
    await assert.rejects(
      openAccessMap(options(`redis://:s3cret-pw@127.0.0.1:${port}`, { timeoutMs: 200, openTimeoutMs: 600 })),
      (e: unknown) => isOpen(/Redis did not answer \(no connection within 600 ms; last error: .*ECONNREFUSED.*start Redis or correct `\[store\] url`/)(e) && !(e as Error).message.includes('s3cret-pw') && (e as Error).message.includes('***'),
    );
  });

  test('a password-protected Redis: the wrong password is refused at open naming the fix; the right one works', async () => {
    const r = await startRedis({ password: 'right horse battery' });
    try {
      const wrong = `redis://:wrong@127.0.0.1:${r.port}`;
      await assert.rejects(openAccessMap(options(wrong)), (e: unknown) => isOpen(/refused the login \(WRONGPASS.*put the right password in `\[store\] url`/)(e) && !(e as Error).message.includes(':wrong@'));
      await assert.rejects(openAccessMap(options(`redis://127.0.0.1:${r.port}`)), isOpen(/NOAUTH|refused the login/));
      const map = await openAccessMap(options(r.url));
      assert.equal((await map.record({ ip: '192.0.2.1', source: 't' })).recorded, true);
      assert.match((await map.stats()).backend, /^redis:redis:\/\/:\*\*\*@127\.0\.0\.1:\d+$/);
      await map.close();
    } finally {
      await r.stop();
    }
  });
});

describe('redis access map: [store.redis] passthrough', () => {
  test('options reach node-redis (a frozen configuration table is copied, not mutated)', async () => {
    const deepFreeze = <T>(o: T): T => {
      if (o !== null && typeof o === 'object') for (const v of Object.values(o)) deepFreeze(v);
      return Object.freeze(o);
    };
    const clientOptions = deepFreeze({ name: 'rg-passthrough-test', socket: { keepAlive: true, noDelay: true } });
    const map = await openAccessMap(options(redis.url, { clientOptions }));
    try {
      const list = String(await redis.command('CLIENT', 'LIST'));
      assert.match(list, /name=rg-passthrough-test /, 'CLIENT SETNAME from [store.redis] name');
      assert.equal((await map.record({ ip: '192.0.2.3', source: 't' })).recorded, true);
    } finally {
      await map.close();
    }
  });
});

describe('redis access map: two SMTP nodes on one Redis', () => {
  test('a grant recorded through node A is seen by node B; a delete through B is seen by A', async () => {
    const keyPrefix = `fleet${++prefixNo}:`;
    const clock = manualClock(T0);
    const a = await openAccessMap(options(redis.url, { keyPrefix, clock, nodeName: 'smtp-a' }));
    const b = await openAccessMap(options(redis.url, { keyPrefix, clock, nodeName: 'smtp-b' }));
    try {
      await a.record({ ip: '2001:db8::7', user: 'alice', service: 'imap', source: 'dovecot:/var/log/mail.log' });
      assert.deepEqual(await b.lookup('2001:db8::7'), await a.lookup('2001:db8::7'));
      assert.equal((await b.lookup('2001:db8::7'))?.user, 'alice');
      assert.equal((await rcptVerdict(b, '2001:db8::7', clock)).action, 'permit', "node B's engine permits on node A's grant");
      assert.equal((await rcptVerdict(b, '2001:db8::8', clock)).action, 'reject', 'a client without a grant is refused on B');
      assert.equal(await b.delete('2001:db8::7'), true);
      assert.equal(await a.lookup('2001:db8::7'), undefined);
    } finally {
      await a.close();
      await b.close();
      await dropPrefix(redis.url, keyPrefix);
    }
  });

  test('concurrent recordMany of the same IP from both nodes loses no update (count adds up, expiry is the latest)', async () => {
    const keyPrefix = `race${++prefixNo}:`;
    const clocks = [manualClock(T0), manualClock(T0)];
    const nodes = await Promise.all(clocks.map((clock, i) => openAccessMap(options(redis.url, { keyPrefix, clock, nodeName: `n${i}` }))));
    try {
      const rounds = 40;
      const perBatch = 25;
      const work: Promise<unknown>[] = [];
      for (let r = 0; r < rounds; r++) {
        nodes.forEach((node, i) => {
          const batch = Array.from({ length: perBatch }, (_, k) => ({ ip: '192.0.2.77', user: `u${i}`, source: `node${i}`, at: T0 - 10_000 + r * 100 + k }));
          batch.push({ ip: `198.18.${i}.${r}`, user: `solo${i}`, source: `node${i}`, at: T0 });
          work.push(node.recordMany(batch));
        });
      }
      await Promise.all(work);
      const g = await nodes[0]!.lookup('192.0.2.77');
      assert.equal(g?.count, rounds * perBatch * 2, 'every login from both nodes counted: no lost update');
      assert.equal(g?.firstSeen, T0 - 10_000);
      assert.equal(g?.lastSeen, T0 - 10_000 + (rounds - 1) * 100 + perBatch - 1);
      assert.equal(g?.expires, g!.lastSeen + G);
      assert.equal((await nodes[1]!.stats()).active, 1 + 2 * rounds);
    } finally {
      for (const n of nodes) await n.close();
      await dropPrefix(redis.url, keyPrefix);
    }
  });

  test("each node keeps its own source positions (node_name), committed with its grants", async () => {
    const keyPrefix = `state${++prefixNo}:`;
    const a = await openAccessMap(options(redis.url, { keyPrefix, nodeName: 'smtp-a' }));
    const b = await openAccessMap(options(redis.url, { keyPrefix, nodeName: 'smtp-b' }));
    try {
      await a.recordMany([{ ip: '192.0.2.5', source: 'dovecot' }], { 'tail:/var/log/mail.log': { offset: 100 } });
      await b.setState('tail:/var/log/mail.log', { offset: 7 });
      assert.deepEqual(await a.getState('tail:/var/log/mail.log'), { offset: 100 });
      assert.deepEqual(await b.getState('tail:/var/log/mail.log'), { offset: 7 });
      assert.ok(await b.lookup('192.0.2.5'), 'grants are shared, positions are not');
    } finally {
      await a.close();
      await b.close();
      await dropPrefix(redis.url, keyPrefix);
    }
  });
});

describe('redis access map: hostile and foreign values', () => {
  test('garbage at a grant key is never a grant: lookup fails temporary, list skips it, a login replaces it, delete removes it', async () => {
    const keyPrefix = `hostile${++prefixNo}:`;
    const { logger, lines } = captureLogger();
    const clock = manualClock(T0);
    const map = await openAccessMap(options(redis.url, { keyPrefix, logger, clock }));
    try {
      const garbage: Array<string | Buffer> = [
        Buffer.from([0xff, 0x00, 0xfe, 0x80, 0x0a]),
        '[1,"9999999999999","x"]',
        JSON.stringify([1, T0 + G, T0, T0, 1, 'mallory', null, 7]), // a number where the source text belongs
        JSON.stringify([2, T0 + G, T0, T0, 1, null, null, 'x']), // an unknown record version
        JSON.stringify({ expires: T0 + G }),
        'OK',
      ];
      for (const value of garbage) {
        await redis.command('SET', `${keyPrefix}grant:192.0.2.66`, value);
        await assert.rejects(map.lookup('192.0.2.66'), isIo, `lookup of ${JSON.stringify(String(value))}`);
        const v = await rcptVerdict(map, '192.0.2.66', clock);
        assert.equal(v.action, 'defer', `never a permit on ${JSON.stringify(String(value))}`);
      }
      assert.ok(lines.some((l) => l.event === 'grant_unreadable' && l.client_ip === '192.0.2.66'));
      // In the index too (as if relaygate had written it): list skips it and says so.
      await redis.command('ZADD', `${keyPrefix}expiry`, String(T0 + G), '192.0.2.66');
      await redis.command('ZADD', `${keyPrefix}expiry`, String(T0 + G), 'not-an-ip');
      await map.record({ ip: '192.0.2.1', source: 't' });
      assert.deepEqual((await map.list()).map((g) => g.ip), ['192.0.2.1']);
      // A real login over it replaces the record (logged), and the grant is clean.
      const r = await map.record({ ip: '192.0.2.66', user: 'alice', source: 'dovecot' });
      assert.equal(r.recorded && r.grant.count, 1);
      assert.ok(lines.some((l) => l.event === 'grant_unreadable' && /replaced/.test(l.msg)));
      assert.equal((await map.lookup('192.0.2.66'))?.user, 'alice');
      // Numbers out of range (an expiry no PX could express) are unreadable to the merge script as well:
      // the login replaces the record instead of failing the whole batch forever.
      for (const absurd of [[1, 1e300, T0, T0, 1, null, null, 'x'], [1, T0 + G, T0, T0, -4, null, null, 'x'], [1, T0 + G, T0, T0, 1.5, null, null, 'x']]) {
        await redis.command('SET', `${keyPrefix}grant:192.0.2.69`, JSON.stringify(absurd));
        await assert.rejects(map.lookup('192.0.2.69'), isIo, JSON.stringify(absurd));
        const again = await map.recordMany([{ ip: '192.0.2.69', source: 'dovecot' }, { ip: '192.0.2.70', source: 'dovecot' }]);
        assert.deepEqual(again.map((x) => x.recorded && x.grant.count), [1, 1], `the batch went through over ${JSON.stringify(absurd)}`);
        await map.delete('192.0.2.70');
      }
      // A wrong Redis type at the key: an error reply, still temporary.
      await redis.command('DEL', `${keyPrefix}grant:192.0.2.67`);
      await redis.command('HSET', `${keyPrefix}grant:192.0.2.67`, 'a', 'b');
      await assert.rejects(map.lookup('192.0.2.67'), isIo);
      await redis.command('SET', `${keyPrefix}grant:192.0.2.68`, 'garbage');
      assert.equal(await map.delete('192.0.2.68'), true, 'an unreadable grant can be deleted (map del)');
      assert.equal(await redis.command('EXISTS', `${keyPrefix}grant:192.0.2.68`), 0);
      // The sweep drops the foreign index member once its score has passed.
      clock.set(T0 + G + 1);
      await map.sweep();
      assert.equal((await map.stats()).expiredPending, 0);
    } finally {
      await map.close();
      await dropPrefix(redis.url, keyPrefix);
    }
  });

  test('hostile state is an error naming the fix, not a silent restart of the source', async () => {
    const keyPrefix = `hstate${++prefixNo}:`;
    const map = await openAccessMap(options(redis.url, { keyPrefix, nodeName: 'n1' }));
    try {
      await redis.command('HSET', `${keyPrefix}state:n1`, 'tail:/var/log/mail.log', '{not json');
      await assert.rejects(map.getState('tail:/var/log/mail.log'), (e: unknown) => isIo(e) && /HDEL .*state:n1 tail:\/var\/log\/mail\.log/.test((e as Error).message));
    } finally {
      await map.close();
      await dropPrefix(redis.url, keyPrefix);
    }
  });

  test("the format marker: a new keyspace gets it; a foreign one, or relaygate's index without it, is refused", async () => {
    const keyPrefix = `fmt${++prefixNo}:`;
    try {
      const m = await openAccessMap(options(redis.url, { keyPrefix }));
      await m.close();
      assert.equal(await redis.command('GET', `${keyPrefix}format`), 'relaygate-access-map:1');
      await redis.command('SET', `${keyPrefix}format`, 'relaygate-access-map:9');
      await assert.rejects(openAccessMap(options(redis.url, { keyPrefix })), isOpen(/format marker .* is "relaygate-access-map:9".*key_prefix/));
      await redis.command('DEL', `${keyPrefix}format`);
      await redis.command('ZADD', `${keyPrefix}expiry`, '1', 'x');
      await assert.rejects(openAccessMap(options(redis.url, { keyPrefix })), isOpen(/without relaygate's format marker/));
    } finally {
      await dropPrefix(redis.url, keyPrefix);
    }
  });

  test('decodeRedisGrant accepts exactly what the Lua script writes', () => {
    const ok = decodeRedisGrant(JSON.stringify([1, T0 + G, T0, T0 - 5, 3, null, 'imap', 'dovecot']));
    assert.deepEqual(ok, { expires: T0 + G, lastSeen: T0, firstSeen: T0 - 5, count: 3, user: null, service: 'imap', source: 'dovecot' });
    for (const bad of [null, 42, '', '[]', '[1]', JSON.stringify([1, 1.5, 0, 0, 1, null, null, '']), JSON.stringify([1, 1, 1, 1, 0, null, null, '']), JSON.stringify([1, 1, 1, 1, 1, null, null, '', 'extra'])]) {
      assert.throws(() => decodeRedisGrant(bad), JSON.stringify(bad));
    }
  });
});

describe('redis access map: expiry in Redis and the sweeper', () => {
  test('grant keys carry PX at the grant expiry; a key Redis expired leaves an index entry the sweep prunes', async () => {
    const keyPrefix = `px${++prefixNo}:`;
    const map = await openAccessMap(options(redis.url, { keyPrefix, clock: () => Date.now() }));
    try {
      await map.record({ ip: '192.0.2.20', source: 't', ttl: 1 });
      await map.record({ ip: '192.0.2.21', source: 't' });
      const pttl = Number(await redis.command('PTTL', `${keyPrefix}grant:192.0.2.20`));
      assert.ok(pttl > 0 && pttl <= 1000, `PTTL ${pttl}`);
      const pttl2 = Number(await redis.command('PTTL', `${keyPrefix}grant:192.0.2.21`));
      assert.ok(pttl2 > 1000 && pttl2 <= G, `PTTL ${pttl2}`);
      // Redis forgets the key by itself (bounded wait) ...
      let gone = false;
      for (let i = 0; i < 60 && !gone; i++) {
        gone = Number(await redis.command('EXISTS', `${keyPrefix}grant:192.0.2.20`)) === 0;
        if (!gone) await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(gone, 'Redis expired the key');
      assert.equal(await map.lookup('192.0.2.20'), undefined);
      assert.equal((await map.stats()).expiredPending, 1, '... its index entry waits for the sweep');
      // ... and the daemon's sweeper prunes the index.
      const sweeper = startSweeper({ map, intervalMs: 60_000, clock: () => Date.now(), logger: silentLogger() });
      assert.equal(await sweeper.runNow(), 1);
      await sweeper.stop();
      const s = await map.stats();
      assert.deepEqual([s.active, s.expiredPending], [1, 0]);
      assert.equal(Number(await redis.command('ZCARD', `${keyPrefix}expiry`)), 1);
    } finally {
      await map.close();
      await dropPrefix(redis.url, keyPrefix);
    }
  });

  test('a sweep of more than one chunk removes every expired grant and no live one', async () => {
    const keyPrefix = `chunk${++prefixNo}:`;
    const clock = manualClock(T0);
    const map = (await openAccessMap(options(redis.url, { keyPrefix, clock }))) as RedisAccessMap;
    try {
      const n = REDIS_SWEEP_CHUNK * 2 + 17;
      await map.recordMany(Array.from({ length: n }, (_, i) => ({ ip: `10.9.${i >> 8}.${i & 255}`, source: 't', ttl: 60 })));
      await map.recordMany(Array.from({ length: 50 }, (_, i) => ({ ip: `10.8.0.${i}`, source: 't' })));
      clock.advance(60_000);
      assert.equal(await map.sweep(), n);
      assert.equal(map.lastSweepExamined, n, 'O(expired): only expired entries examined');
      const s = await map.stats();
      assert.deepEqual([s.active, s.expiredPending], [50, 0]);
      assert.equal((await map.list()).length, 50);
    } finally {
      await map.close();
      await dropPrefix(redis.url, keyPrefix);
    }
  });
});
