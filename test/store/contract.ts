// The access-map contract: one suite every backend runs (LMDB and Redis), so that "a grant" means
// the same thing whichever store the operator picks. A backend's test file calls
// runAccessMapContract(name, factory); the factory builds a fresh, empty store for each test and can reopen
// it (restart persistence). Times come from manualClock; nothing here sleeps.
//
// Security: the cases include hostile and junk input a log or feed can carry (`unknown`, zone ids,
// hostnames, mapped IPv4, future login times, absurd ttls): the store must refuse or normalize them itself.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { manualClock } from '../../src/clock.ts';
import { CidrSet } from '../../src/net/index.ts';
import { createLogger, type Logger } from '../../src/log/logger.ts';
import { isRelaygateError } from '../../src/errors.ts';
import type { AccessMap, Grant, LoginEvent, RecordResult } from '../../src/store/types.ts';

export const T0 = Date.UTC(2025, 0, 15, 12, 0, 0);
export const GRACE = 1800;
const G = GRACE * 1000;

export type ManualClock = ReturnType<typeof manualClock>;

/** What a test hands the factory; a backend must honour every field. */
export interface ContractEnv {
  readonly clock: ManualClock;
  readonly grace: number;
  readonly mynetworks: CidrSet;
  readonly neverAuthorize: CidrSet;
  readonly logger: Logger;
}

export interface ContractStore {
  /** Opens the store; called again after close(), it must reopen the same data (a daemon restart). */
  open(): Promise<AccessMap>;
  /** Removes whatever the store left behind (directories, keys). */
  destroy(): Promise<void>;
  /**
   * Optional: how many stored entries the last sweep examined. Backends that can tell prove sweep() is
   * O(expired) — it examines the expired entries, not the live ones.
   */
  sweepExamined?(map: AccessMap): number;
}

export type ContractFactory = (env: ContractEnv) => Promise<ContractStore>;

export interface LogLine {
  readonly level: string;
  readonly msg: string;
  readonly [k: string]: unknown;
}

/** A real pino logger (the project's own setup) whose JSON lines land in an array. */
export function captureLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as LogLine);
      cb();
    },
  });
  return { logger: createLogger({ level: 'trace', destination: stream }), lines };
}

interface Ctx {
  readonly map: AccessMap;
  readonly clock: ManualClock;
  readonly lines: LogLine[];
  readonly store: ContractStore;
  /** close and reopen the same store; returns the new map */
  reopen(): Promise<AccessMap>;
}

function granted(r: RecordResult): Grant {
  assert.equal(r.recorded, true, `expected a grant, got ${JSON.stringify(r)}`);
  return (r as { grant: Grant }).grant;
}

function refused(r: RecordResult): { reason: string; detail: string } {
  assert.equal(r.recorded, false, `expected a refusal, got ${JSON.stringify(r)}`);
  return r as { reason: string; detail: string };
}

export function runAccessMapContract(name: string, factory: ContractFactory): void {
  async function withMap(fn: (c: Ctx) => Promise<void>): Promise<void> {
    const clock = manualClock(T0);
    const { logger, lines } = captureLogger();
    const store = await factory({
      clock,
      grace: GRACE,
      // the defaults of config/schema.ts, plus a site network
      mynetworks: new CidrSet(['127.0.0.0/8', '[::1]/128', '198.51.100.0/24']),
      neverAuthorize: new CidrSet(['0.0.0.0/8', '224.0.0.0/4', '255.255.255.255/32', '::/128', 'ff00::/8']),
      logger,
    });
    let map = await store.open();
    const ctx = {
      get map() {
        return map;
      },
      clock,
      lines,
      store,
      async reopen() {
        await map.close();
        map = await store.open();
        return map;
      },
    };
    try {
      await fn(ctx);
    } finally {
      await map.close().catch(() => undefined);
      await store.destroy();
    }
  }

  describe(`access map contract: ${name}`, () => {
    test('record then lookup: the grant keeps ip, user, service, source, times and count', async () => {
      await withMap(async ({ map, clock }) => {
        clock.set(T0 + 5);
        const g = granted(await map.record({ ip: '192.0.2.7', user: 'alice', service: 'imap', source: 'dovecot:/var/log/mail.log' }));
        const want: Grant = { ip: '192.0.2.7', user: 'alice', service: 'imap', source: 'dovecot:/var/log/mail.log', firstSeen: T0 + 5, lastSeen: T0 + 5, expires: T0 + 5 + G, count: 1 };
        assert.deepEqual(g, want, 'login time defaults to the clock; expiry = login + grace');
        assert.deepEqual(await map.lookup('192.0.2.7'), want);
        assert.equal(await map.lookup('192.0.2.8'), undefined);
      });
    });

    test('absent user and service are stored as null; unicode text round-trips', async () => {
      await withMap(async ({ map }) => {
        granted(await map.record({ ip: '192.0.2.1', source: 'drac' }));
        granted(await map.record({ ip: '192.0.2.2', user: 'jürgen@例え.jp', service: 'pop3', source: 'feed' }));
        const a = await map.lookup('192.0.2.1');
        assert.equal(a?.user, null);
        assert.equal(a?.service, null);
        assert.equal(a?.source, 'drac');
        assert.equal((await map.lookup('192.0.2.2'))?.user, 'jürgen@例え.jp');
      });
    });

    test('a newer login slides the expiry, counts, keeps firstSeen and takes the latest user/service/source', async () => {
      await withMap(async ({ map, clock }) => {
        granted(await map.record({ ip: '192.0.2.7', user: 'alice', service: 'pop3', source: 'courier' }));
        clock.advance(600_000);
        const g = granted(await map.record({ ip: '192.0.2.7', user: 'bob', service: 'imap', source: 'dovecot' }));
        assert.deepEqual(g, { ip: '192.0.2.7', user: 'bob', service: 'imap', source: 'dovecot', firstSeen: T0, lastSeen: T0 + 600_000, expires: T0 + 600_000 + G, count: 2 });
        clock.set(T0 + G + 1); // past the first login's expiry, inside the refreshed one
        assert.equal((await map.lookup('192.0.2.7'))?.user, 'bob');
        clock.set(T0 + 600_000 + G);
        assert.equal(await map.lookup('192.0.2.7'), undefined);
      });
    });

    test('an older login (out of order) never shortens the grant nor replaces the latest user', async () => {
      await withMap(async ({ map, clock }) => {
        clock.set(T0 + 600_000);
        granted(await map.record({ ip: '192.0.2.7', user: 'bob', source: 'a', at: T0 + 600_000 }));
        const g = granted(await map.record({ ip: '192.0.2.7', user: 'alice', source: 'b', at: T0 }));
        assert.equal(g.expires, T0 + 600_000 + G, 'expiry is the max of the two');
        assert.equal(g.lastSeen, T0 + 600_000);
        assert.equal(g.firstSeen, T0, 'firstSeen is the earliest login seen');
        assert.equal(g.user, 'bob');
        assert.equal(g.source, 'a');
        assert.equal(g.count, 2);
        assert.deepEqual(await map.lookup('192.0.2.7'), g);
      });
    });

    test('a newer login without a user (DRAC) clears the user; an older one keeps it', async () => {
      await withMap(async ({ map, clock }) => {
        granted(await map.record({ ip: '192.0.2.7', user: 'alice', service: 'imap', source: 'dovecot' }));
        clock.advance(1000);
        const g = granted(await map.record({ ip: '192.0.2.7', source: 'drac' }));
        assert.deepEqual([g.user, g.service, g.source, g.count], [null, null, 'drac', 2], 'the grant says who logged in last: nobody known');
        granted(await map.record({ ip: '192.0.2.8', user: 'bob', source: 'dovecot' }));
        const h = granted(await map.record({ ip: '192.0.2.8', source: 'drac', at: T0 - 1000 }));
        assert.deepEqual([h.user, h.source, h.firstSeen, h.lastSeen], ['bob', 'dovecot', T0 - 1000, T0 + 1000]);
        assert.equal((await map.lookup('192.0.2.7'))?.user, null);
      });
    });

    test('an expired grant is absent at once, before any sweep (boundary table)', async () => {
      const cases: Array<[offset: number, present: boolean]> = [
        [0, true],
        [G - 1, true],
        [G, false], // expires <= now is expired
        [G + 1, false],
        [10 * G, false],
      ];
      await withMap(async ({ map, clock }) => {
        granted(await map.record({ ip: '192.0.2.7', source: 't' }));
        for (const [offset, present] of cases) {
          clock.set(T0 + offset);
          assert.equal((await map.lookup('192.0.2.7')) !== undefined, present, `lookup at +${offset} ms`);
          assert.equal((await map.lookup('192.0.2.7', T0 + offset)) !== undefined, present, `lookup(ip, now) at +${offset} ms`);
          assert.equal((await map.list()).length, present ? 1 : 0, `list at +${offset} ms`);
          const s = await map.stats();
          assert.equal(s.active, present ? 1 : 0, `stats.active at +${offset} ms`);
          assert.equal(s.expiredPending, present ? 0 : 1, `stats.expiredPending at +${offset} ms`);
        }
      });
    });

    test("a login's ttl overrides grace (shorter and longer)", async () => {
      await withMap(async ({ map, clock }) => {
        assert.equal(granted(await map.record({ ip: '192.0.2.1', source: 'feed', ttl: 60 })).expires, T0 + 60_000);
        assert.equal(granted(await map.record({ ip: '192.0.2.2', source: 'feed', ttl: 7200 })).expires, T0 + 7_200_000);
        clock.set(T0 + 59_999);
        assert.ok(await map.lookup('192.0.2.1'));
        clock.set(T0 + 60_000);
        assert.equal(await map.lookup('192.0.2.1'), undefined);
        clock.set(T0 + G + 1);
        assert.ok(await map.lookup('192.0.2.2'), 'longer ttl outlives grace');
      });
    });

    test('a login already expired when it is recorded is refused as stale; a future login counts as now', async () => {
      const cases: Array<[what: string, login: Omit<LoginEvent, 'ip' | 'source'>, expect: 'stale' | number]> = [
        ['exactly grace old', { at: T0 - G }, 'stale'],
        ['older than grace', { at: T0 - 2 * G }, 'stale'],
        ['1 ms younger than grace', { at: T0 - G + 1 }, T0 + 1],
        ['ttl 0', { ttl: 0 }, 'stale'],
        ['negative ttl', { ttl: -5 }, 'stale'],
        ['short ttl, old login', { at: T0 - 61_000, ttl: 60 }, 'stale'],
        ['login in the future (clock skew) is clamped to now', { at: T0 + 3_600_000 }, T0 + G],
        ['login time outside the Date range (a hostile feed)', { at: -9e15 }, 'stale'],
      ];
      await withMap(async ({ map }) => {
        let i = 0;
        for (const [what, login, expect] of cases) {
          const ip = `192.0.2.${++i}`;
          const r = await map.record({ ip, source: 't', ...login });
          if (expect === 'stale') {
            assert.equal(refused(r).reason, 'stale', what);
            assert.equal(await map.lookup(ip), undefined, what);
          } else {
            assert.equal(granted(r).expires, expect, what);
          }
        }
      });
    });

    test('non-finite login times and ttls are refused as bad_time, never stored', async () => {
      await withMap(async ({ map }) => {
        for (const login of [{ at: Number.NaN }, { ttl: Number.NaN }, { ttl: Number.POSITIVE_INFINITY }, { ttl: 1e300 }]) {
          const r = refused(await map.record({ ip: '192.0.2.9', source: 't', ...login }));
          assert.equal(r.reason, 'bad_time', JSON.stringify(login));
        }
        assert.equal(await map.lookup('192.0.2.9'), undefined);
        assert.equal((await map.stats()).active, 0);
      });
    });

    test('mynetworks and never_authorize addresses are never recorded (logged at debug)', async () => {
      const cases: Array<[ip: string, reason: 'mynetworks' | 'never_authorize']> = [
        ['127.0.0.1', 'mynetworks'],
        ['::ffff:127.0.0.5', 'mynetworks'],
        ['::1', 'mynetworks'],
        ['198.51.100.20', 'mynetworks'],
        ['0.0.0.0', 'never_authorize'],
        ['224.0.0.1', 'never_authorize'],
        ['255.255.255.255', 'never_authorize'],
        ['::', 'never_authorize'],
        ['ff02::1', 'never_authorize'],
      ];
      await withMap(async ({ map, lines }) => {
        for (const [ip, reason] of cases) {
          const r = refused(await map.record({ ip, source: 't', user: 'mallory' }));
          assert.equal(r.reason, reason, ip);
          assert.ok(r.detail.length > 0, ip);
          assert.equal(await map.lookup(ip), undefined, ip);
          const line = lines.findLast((l) => l.reason === reason);
          assert.equal(line?.level, 'debug', `${ip} refusal logged at debug`);
        }
        assert.deepEqual(await map.list(), []);
        assert.equal(lines.filter((l) => l.level === 'warn' || l.level === 'error').length, 0, 'routine refusals are not warnings');
        const s = await map.stats();
        assert.equal(s.refused, cases.length);
        assert.equal(s.recorded, 0);
      });
    });

    test('IPv6 is stored in RFC 5952 form; mapped IPv4 and plain IPv4 share one grant', async () => {
      await withMap(async ({ map }) => {
        assert.equal(granted(await map.record({ ip: '2001:DB8:0:0:0:0:0:1', source: 't' })).ip, '2001:db8::1');
        assert.equal((await map.lookup('2001:db8::1'))?.ip, '2001:db8::1');
        assert.equal(granted(await map.record({ ip: '::ffff:192.0.2.7', source: 't', user: 'v6sock' })).ip, '192.0.2.7');
        assert.equal((await map.lookup('192.0.2.7'))?.user, 'v6sock');
        assert.equal((await map.lookup('::ffff:192.0.2.7'))?.ip, '192.0.2.7', 'a mapped lookup finds the IPv4 grant too');
        const g = granted(await map.record({ ip: '192.0.2.7', source: 't', user: 'v4log' }));
        assert.equal(g.count, 2, 'the IPv4 log line refreshed the grant the mapped address created');
        assert.deepEqual((await map.list()).map((x) => x.ip), ['192.0.2.7', '2001:db8::1']);
      });
    });

    test('junk addresses are refused as bad_ip with a detail, logged at warn, and never found', async () => {
      const junk = ['unknown', 'fe80::1%eth0', '', 'mail.example.com', 'localhost', ' 192.0.2.1', '[192.0.2.1]', '010.0.0.1', '192.0.2.256', '192.0.2.0/24', '2001:db8::1::2', 'x'.repeat(300)];
      await withMap(async ({ map, lines }) => {
        for (const ip of junk) {
          const r = refused(await map.record({ ip, source: 'dovecot', user: 'u' }));
          assert.equal(r.reason, 'bad_ip', JSON.stringify(ip));
          assert.match(r.detail, /invalid|address/i, JSON.stringify(ip));
          assert.equal(await map.lookup(ip), undefined, `lookup(${JSON.stringify(ip)}) is a miss, not an error`);
          assert.equal(await map.delete(ip), false);
        }
        const warns = lines.filter((l) => l.level === 'warn' && l.reason === 'bad_ip');
        assert.equal(warns.length, junk.length);
        assert.deepEqual(await map.list(), []);
      });
    });

    test('recordMany: results in order, refusals per login, repeated IPs merged in one batch', async () => {
      await withMap(async ({ map, clock }) => {
        const rs = await map.recordMany([
          { ip: '192.0.2.1', user: 'a', source: 't', at: T0 - 1000 },
          { ip: 'unknown', source: 't' },
          { ip: '127.0.0.1', source: 't' },
          { ip: '192.0.2.1', user: 'b', source: 't' },
          { ip: '2001:db8::5', source: 't', ttl: 10 },
        ]);
        assert.equal(rs.length, 5);
        assert.equal(granted(rs[0]!).count, 1);
        assert.equal(refused(rs[1]!).reason, 'bad_ip');
        assert.equal(refused(rs[2]!).reason, 'mynetworks');
        assert.deepEqual(granted(rs[3]!), { ip: '192.0.2.1', user: 'b', service: null, source: 't', firstSeen: T0 - 1000, lastSeen: T0, expires: T0 + G, count: 2 });
        assert.equal(granted(rs[4]!).expires, T0 + 10_000);
        assert.deepEqual(await map.recordMany([]), []);
        clock.advance(1);
        assert.deepEqual(await map.lookup('192.0.2.1'), granted(rs[3]!));
        const s = await map.stats();
        assert.equal(s.recorded, 3);
        assert.equal(s.refused, 2);
        assert.equal(s.active, 2);
      });
    });

    test('delete removes a grant and says whether one existed', async () => {
      await withMap(async ({ map, clock, store }) => {
        granted(await map.record({ ip: '192.0.2.1', source: 't' }));
        granted(await map.record({ ip: '2001:db8::1', source: 't' }));
        granted(await map.record({ ip: '192.0.2.3', source: 't', ttl: 10 }));
        assert.equal(await map.delete('192.0.2.1'), true);
        assert.equal(await map.lookup('192.0.2.1'), undefined);
        assert.equal(await map.delete('192.0.2.1'), false, 'second delete');
        assert.equal(await map.delete('192.0.2.99'), false, 'never existed');
        assert.equal(await map.delete('2001:DB8::1'), true, 'delete normalizes its argument');
        clock.advance(10_000);
        assert.equal(await map.delete('192.0.2.3'), false, 'an expired grant was already absent');
        assert.equal((await map.stats()).expiredPending, 0, 'but it is gone from the store');
        assert.equal(await map.sweep(), 0, 'nothing left for the sweep: the index entry went with the grant');
        if (store.sweepExamined) assert.equal(store.sweepExamined(map), 0);
        // a deleted grant starts afresh when the client logs in again
        assert.equal(granted(await map.record({ ip: '192.0.2.1', source: 't' })).count, 1);
      });
    });

    test('list returns unexpired grants ordered by IP string', async () => {
      const ips = ['192.0.2.10', '10.0.0.1', '2001:db8::a', '192.0.2.9', '203.0.113.5', '2001:db8::1:0', '1.2.3.4', 'fd00::1'];
      await withMap(async ({ map, clock }) => {
        for (const ip of ips) granted(await map.record({ ip, source: 't', user: `u-${ip}` }));
        granted(await map.record({ ip: '100.64.0.1', source: 't', ttl: 5 }));
        clock.advance(5_000);
        const listed = await map.list();
        assert.deepEqual(listed.map((g) => g.ip), [...ips].sort());
        for (const g of listed) assert.deepEqual(await map.lookup(g.ip), g, `list and lookup agree on ${g.ip}`);
        assert.deepEqual(await map.list(T0 + G), [], 'list(now) honours its argument');
      });
    });

    test('sweep removes exactly the expired grants and respects slid expiries', async () => {
      await withMap(async ({ map, clock, store }) => {
        for (let i = 1; i <= 3; i++) granted(await map.record({ ip: `192.0.2.${i}`, source: 't', ttl: 60 }));
        granted(await map.record({ ip: '192.0.2.50', source: 't' })); // grace
        granted(await map.record({ ip: '192.0.2.51', source: 't', ttl: 60 }));
        clock.advance(30_000);
        granted(await map.record({ ip: '192.0.2.51', source: 't' })); // slides 60 s → grace from now
        clock.set(T0 + 60_000);
        assert.equal(await map.sweep(), 3);
        if (store.sweepExamined) assert.equal(store.sweepExamined(map), 3, 'the slid grant left no stale index entry behind');
        assert.equal(await map.sweep(), 0, 'a second sweep finds nothing');
        assert.deepEqual((await map.list()).map((g) => g.ip), ['192.0.2.50', '192.0.2.51']);
        const s = await map.stats();
        assert.equal(s.swept, 3);
        assert.equal(s.lastSweepAt, T0 + 60_000);
        assert.equal(typeof s.lastSweepMs, 'number');
        assert.equal(await map.sweep(T0 + 30_000 + G), 2, 'sweep(now) honours its argument');
        assert.equal((await map.stats()).swept, 5);
      });
    });

    test('sweep is O(expired): many live grants, few expired', async () => {
      const live = 3000;
      await withMap(async ({ map, clock, store }) => {
        const batch: LoginEvent[] = [];
        for (let i = 0; i < live; i++) batch.push({ ip: `10.1.${i >> 8}.${i & 255}`, source: 't' });
        for (let i = 0; i < 7; i++) batch.push({ ip: `192.0.2.${i}`, source: 't', ttl: 1 });
        const rs = await map.recordMany(batch);
        assert.ok(rs.every((r) => r.recorded));
        clock.advance(1000);
        assert.equal(await map.sweep(), 7);
        if (store.sweepExamined) assert.equal(store.sweepExamined(map), 7, 'only the expired entries were examined');
        const s = await map.stats();
        assert.equal(s.active, live);
        assert.equal(s.expiredPending, 0);
      });
    });

    test('stats: active, pending, expiry range and totals', async () => {
      await withMap(async ({ map, clock }) => {
        let s = await map.stats();
        assert.equal(s.active, 0);
        assert.equal(s.oldestExpiry, null);
        assert.equal(s.newestExpiry, null);
        assert.equal(s.lastSweepAt, null);
        assert.ok(s.backend.length > 0);
        granted(await map.record({ ip: '192.0.2.1', source: 't', ttl: 10 }));
        granted(await map.record({ ip: '192.0.2.2', source: 't', ttl: 100 }));
        granted(await map.record({ ip: '192.0.2.3', source: 't', ttl: 1000 }));
        refused(await map.record({ ip: 'unknown', source: 't' }));
        s = await map.stats();
        assert.deepEqual(
          { active: s.active, pending: s.expiredPending, oldest: s.oldestExpiry, newest: s.newestExpiry, recorded: s.recorded, refused: s.refused },
          { active: 3, pending: 0, oldest: T0 + 10_000, newest: T0 + 1_000_000, recorded: 3, refused: 1 },
        );
        clock.set(T0 + 100_000);
        s = await map.stats();
        assert.deepEqual([s.active, s.expiredPending, s.oldestExpiry, s.newestExpiry], [1, 2, T0 + 1_000_000, T0 + 1_000_000]);
        s = await map.stats(T0 + 50_000);
        assert.deepEqual([s.active, s.expiredPending, s.oldestExpiry], [2, 1, T0 + 100_000], 'stats(now) honours its argument');
      });
    });

    test('grants survive a restart (close and reopen the same store)', async () => {
      await withMap(async (ctx) => {
        const { clock } = ctx;
        granted(await ctx.map.record({ ip: '192.0.2.1', user: 'alice', service: 'imap', source: 'dovecot' }));
        granted(await ctx.map.record({ ip: '2001:db8::1', user: 'bob', source: 'feed', ttl: 60 }));
        clock.advance(1000);
        granted(await ctx.map.record({ ip: '192.0.2.1', user: 'alice', service: 'pop3', source: 'dovecot' }));
        const before = await ctx.map.list();
        assert.equal(before.length, 2);
        const map = await ctx.reopen();
        assert.deepEqual(await map.list(), before);
        assert.deepEqual(await map.lookup('192.0.2.1'), before[0]);
        clock.set(T0 + 60_000);
        assert.equal(await map.lookup('2001:db8::1'), undefined, 'still expires after the restart');
        assert.equal(await map.sweep(), 1, 'the expiry index survived too');
        assert.equal(granted(await map.record({ ip: '192.0.2.1', source: 'dovecot' })).count, 3);
        await ctx.reopen();
        assert.equal((await ctx.map.lookup('192.0.2.1'))?.count, 3, 'the refresh after the first restart persisted');
      });
    });

    test("a source's state commits with its batch and survives a restart", async () => {
      await withMap(async (ctx) => {
        assert.equal(await ctx.map.getState('tail:/var/log/mail.log'), undefined);
        const pos = { dev: 1, ino: 2, offset: 4096, fingerprint: 'abc', fpLen: 1024 };
        const r = await ctx.map.recordMany([{ ip: '192.0.2.30', user: 'alice', source: 'dovecot' }, { ip: '127.0.0.1', source: 'dovecot' }], { 'tail:/var/log/mail.log': pos });
        assert.deepEqual(r.map((x) => x.recorded), [true, false]);
        assert.deepEqual(await ctx.map.getState('tail:/var/log/mail.log'), pos);
        // a batch of only refused logins still moves the position on
        await ctx.map.recordMany([{ ip: '127.0.0.1', source: 'dovecot' }], { 'tail:/var/log/mail.log': { ...pos, offset: 5000 } });
        await ctx.map.setState('journald', { cursor: 's=1;i=2' });
        const map = await ctx.reopen();
        assert.equal(((await map.getState('tail:/var/log/mail.log')) as { offset: number }).offset, 5000);
        assert.deepEqual(await map.getState('journald'), { cursor: 's=1;i=2' });
        assert.ok(await map.lookup('192.0.2.30'));
      });
    });

    test('after close, operations fail with RG_ERR_STORE_IO instead of answering "no grant"', async () => {
      await withMap(async ({ map }) => {
        granted(await map.record({ ip: '192.0.2.1', source: 't' }));
        await map.close();
        await map.close(); // idempotent
        const isIo = (e: unknown) => isRelaygateError(e) && e.code === 'RG_ERR_STORE_IO';
        await assert.rejects(map.lookup('192.0.2.1'), isIo);
        await assert.rejects(map.record({ ip: '192.0.2.2', source: 't' }), isIo);
        await assert.rejects(map.sweep(), isIo);
      });
    });
  });
}
