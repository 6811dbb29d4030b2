// The usage log: aggregation in memory, merge into LMDB at flush, persistence across reopen, client IPs
// newest first and bounded, per-day totals, and the POP-before-SMTP dependents report built from it.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageLog, dayOf } from '../../src/usage/usage-log.ts';
import { popDependents } from '../../src/usage/report.ts';
import { SunsetPolicy } from '../../src/engine/sunset.ts';
import { silentLogger } from '../../src/log/logger.ts';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 10, 1, 12, 0, 0);

describe('UsageLog', () => {
  let dir: string;
  let now = T0;
  const clock = () => now;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rg-usage-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('counts, first/last, IPs newest first (at most 8), per-day totals; survives a reopen', async () => {
    const path = join(dir, 'a');
    let log = await UsageLog.open(path, { clock, logger: silentLogger(), flushMs: 0 });
    log.note({ method: 'pop', user: 'alice', ip: '192.0.2.1', at: T0 });
    log.note({ method: 'pop', user: 'alice', ip: '192.0.2.2', at: T0 + 1000 });
    log.note({ method: 'sasl', user: 'alice', ip: '192.0.2.2', at: T0 + 2000 });
    log.note({ method: 'mynetworks', user: '<app@example.com>', ip: '127.0.0.5', at: T0 + DAY });
    assert.deepEqual(log.users(), [], 'nothing in LMDB before a flush');
    await log.flush();
    for (let i = 0; i < 12; i++) log.note({ method: 'pop', user: 'alice', ip: `198.51.100.${i}`, at: T0 + 10_000 + i });
    await log.close();

    now = T0 + DAY;
    log = await UsageLog.open(path, { clock, logger: silentLogger(), flushMs: 0 });
    const users = log.users();
    const alice = users.find((u) => u.user === 'alice')!;
    assert.equal(alice.methods.pop?.count, 14);
    assert.equal(alice.methods.pop?.first, T0);
    assert.equal(alice.methods.pop?.last, T0 + 10_011);
    assert.equal(alice.methods.pop?.ips.length, 8);
    assert.equal(alice.methods.pop?.ips[0], '198.51.100.11', 'newest first');
    assert.equal(alice.methods.sasl?.count, 1);
    assert.equal(users.find((u) => u.user === '<app@example.com>')?.methods.mynetworks?.count, 1);
    const days = log.days(3);
    assert.deepEqual(days.map((d) => d.day), [dayOf(T0 - DAY), dayOf(T0), dayOf(T0 + DAY)]);
    assert.deepEqual(days[1]!.counts, { sasl: 1, pop: 14, mynetworks: 0 });
    assert.deepEqual(days[2]!.counts, { sasl: 0, pop: 0, mynetworks: 1 });
    await log.close();
  });

  test('dependents: recent POP users first, with their SASL use and sunset; old ones left out', async () => {
    const path = join(dir, 'b');
    now = T0;
    const log = await UsageLog.open(path, { clock, logger: silentLogger(), flushMs: 0 });
    log.note({ method: 'pop', user: 'old', ip: '192.0.2.1', at: T0 - 40 * DAY });
    log.note({ method: 'pop', user: 'bob@example.com', ip: '192.0.2.2', at: T0 - 2 * DAY });
    log.note({ method: 'pop', user: 'carol', ip: '192.0.2.3', at: T0 - DAY });
    log.note({ method: 'sasl', user: 'carol', ip: '192.0.2.3', at: T0 - DAY / 2 });
    log.note({ method: 'pop', user: '<drac@example.com>', ip: '192.0.2.4', at: T0 - 3 * DAY });
    log.note({ method: 'sasl', user: 'dave', ip: '192.0.2.5', at: T0 });
    await log.flush();
    const deps = popDependents(log.users(), { now: T0, days: 30, sunset: new SunsetPolicy({ entries: { 'example.com': '2027-03-01' } }) });
    assert.deepEqual(deps.map((d) => d.user), ['carol', 'bob@example.com', '<drac@example.com>']);
    assert.equal(deps[0]!.lastSasl, T0 - DAY / 2, 'carol is migrating');
    assert.equal(deps[1]!.lastSasl, null);
    assert.equal(deps[1]!.sunset?.date, '2027-03-01');
    assert.equal(deps[2]!.sunset?.key, 'example.com', 'a sender address matches its domain');
    assert.equal(deps[0]!.sunset, null);
    await log.close();
  });
});

test('dayOf: the UTC day, the same as formatting the date each time, across midnight and in any order', () => {
  const times = [Date.UTC(2026, 10, 21, 23, 59, 59, 999), Date.UTC(2026, 10, 22), Date.UTC(2026, 10, 21, 12), 0, -1, Date.UTC(2027, 0, 1) - 1, Date.UTC(2027, 0, 1), Date.UTC(2026, 10, 22, 0, 0, 0, 1)];
  for (const t of [...times, ...times.reverse()]) assert.equal(dayOf(t), new Date(t).toISOString().slice(0, 10), String(t));
});
