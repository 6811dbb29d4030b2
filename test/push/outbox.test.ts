// The push outbox (src/push/outbox.ts) and the PushingMap the sources write to (src/push/index.ts), on a
// real LMDB environment in a temporary directory: logins and a source's position commit together and
// survive a reopen; entries go only when every URL has acknowledged them; sequence numbers never go back;
// a full outbox drops its oldest entries (logged) instead of blocking; URLs removed from push_to stop
// holding entries back; PushingMap queues only what could become a grant (valid IP, not mynetworks /
// never_authorize, not older than grace), reads positions from the outbox, then the local map.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Outbox, PushingMap } from '../../src/push/index.ts';
import { openLmdbAccessMap } from '../../src/store/lmdb-map.ts';
import { CidrSet } from '../../src/net/index.ts';
import { manualClock } from '../../src/clock.ts';
import { memoryLogger } from '../helpers/feed.ts';

const T0 = Date.UTC(2026, 10, 21, 16, 0, 0);
const A = 'https://192.0.2.25:8473/v1/logins';
const B = 'https://192.0.2.26:8473/v1/logins';

const opened: Array<{ close(): Promise<void> }> = [];

/** Runs `fn` in a fresh directory; whatever it opened is closed even when an assertion fails (an open LMDB environment would keep the test process alive). */
async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'rg-outbox-'));
  try {
    await fn(dir);
  } finally {
    for (const o of opened.splice(0)) await o.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

async function open(dir: string, consumers = [A, B], limit = 1000, log = memoryLogger()): Promise<Outbox> {
  const box = await Outbox.open({ path: join(dir, 'outbox'), limit, consumers, clock: () => T0, logger: log.logger });
  opened.push(box);
  return box;
}

test('logins and a source position commit together and survive a reopen', async () => {
  await withDir(async (dir) => {
    let box = await open(dir);
    let woken = 0;
    box.onAppend(() => woken++);
    await box.append([{ ip: '192.0.2.7', user: 'alice', service: 'pop3', at: T0 }, { ip: '192.0.2.8', at: T0 + 1 }], { 'tail:/var/log/mail.log': { offset: 4096 } });
    assert.equal(woken, 1);
    await box.close();
    box = await open(dir);
    assert.equal(box.size, 2);
    assert.deepEqual(await box.getState('tail:/var/log/mail.log'), { offset: 4096 });
    assert.deepEqual(box.read(0, 10), [
      { seq: 1, ip: '192.0.2.7', user: 'alice', service: 'pop3', at: T0 },
      { seq: 2, ip: '192.0.2.8', user: undefined, service: undefined, at: T0 + 1 },
    ]);
    await box.setState('tail:/var/log/mail.log', { offset: 8192 });
    assert.deepEqual(await box.getState('tail:/var/log/mail.log'), { offset: 8192 });
    await box.close();
  });
});

test('an entry goes once every URL has acknowledged it; sequence numbers never go back', async () => {
  await withDir(async (dir) => {
    let box = await open(dir);
    await box.append([1, 2, 3].map((i) => ({ ip: `192.0.2.${i}`, at: T0 })));
    await box.ack(A, 3);
    assert.equal(box.size, 3, 'B has not seen them yet');
    assert.equal(box.read(box.cursor(A), 10).length, 0);
    assert.equal(box.read(box.cursor(B), 10).length, 3);
    await box.ack(B, 2);
    assert.equal(box.size, 1);
    await box.ack(B, 3);
    assert.equal(box.size, 0);
    await box.close();
    box = await open(dir);
    await box.append([{ ip: '192.0.2.4', at: T0 }]);
    const [e] = box.read(box.cursor(A), 10);
    assert.equal(e?.seq, 4, 'numbering continues after the acknowledged ones, so no URL skips a new login');
    await box.close();
  });
});

test('a full outbox drops its oldest logins, logs how many, and never refuses new ones', async () => {
  await withDir(async (dir) => {
    const log = memoryLogger();
    const box = await open(dir, [A], 100, log);
    await box.append(Array.from({ length: 80 }, (_, i) => ({ ip: `10.0.0.${i + 1}`, at: T0 + i })));
    const r = await box.append(Array.from({ length: 50 }, (_, i) => ({ ip: `10.0.1.${i + 1}`, at: T0 + 100 + i })));
    assert.equal(r.dropped, 30);
    assert.equal(box.size, 100);
    const all = box.read(0, 1000);
    assert.equal(all.length, 100);
    assert.equal(all[0]!.ip, '10.0.0.31', 'the 30 oldest went');
    assert.equal(all.at(-1)!.ip, '10.0.1.50');
    const ev = log.events().find((e) => e.event === 'push_outbox_full');
    assert.equal(ev?.dropped, 30);
    await box.close();
  });
});

test('a URL removed from push_to no longer holds entries back', async () => {
  await withDir(async (dir) => {
    let box = await open(dir, [A, B]);
    await box.append([{ ip: '192.0.2.1', at: T0 }, { ip: '192.0.2.2', at: T0 }]);
    await box.ack(A, 2);
    await box.ack(B, 1);
    assert.equal(box.size, 1, 'B still needs the second');
    await box.close();
    const log = memoryLogger();
    box = await open(dir, [A], 1000, log);
    assert.ok(log.events().some((e) => e.event === 'push_outbox_consumers_removed'));
    await box.append([{ ip: '192.0.2.3', at: T0 }]);
    await box.ack(A, 3);
    assert.equal(box.size, 0);
    await box.close();
  });
});

test('PushingMap queues only what could become a grant, and resumes positions saved by the local map', async () => {
  await withDir(async (dir) => {
    const clock = manualClock(T0);
    const log = memoryLogger();
    const local = await openLmdbAccessMap({ path: join(dir, 'map'), grace: 1800, mynetworks: new CidrSet(['127.0.0.0/8']), neverAuthorize: new CidrSet(['0.0.0.0/8']), clock, logger: log.logger, verify: false });
    opened.push(local);
    await local.setState('tail:/old', { offset: 10 });
    const box = await open(dir, [A]);
    const pm = new PushingMap({ local, outbox: box, recordLocally: false, grace: 1800, mynetworks: new CidrSet(['127.0.0.0/8']), neverAuthorize: new CidrSet(['0.0.0.0/8']), clock, logger: log.logger });
    assert.deepEqual(await pm.getState('tail:/old'), { offset: 10 }, 'a host that watched before push_to resumes where it was');
    const results = await pm.recordMany(
      [
        { ip: '::ffff:192.0.2.7', user: 'alice', service: 'pop3', source: 's', at: T0 - 1000 },
        { ip: '127.0.0.9', user: 'local', source: 's' },
        { ip: '0.0.0.1', source: 's' },
        { ip: 'unknown', source: 's' },
        { ip: '192.0.2.8', source: 's', at: T0 - 3600_000 },
        { ip: '2001:DB8::5', user: 'u'.repeat(300), source: 's', at: T0 + 60_000 },
      ],
      { 'tail:/old': { offset: 20 } },
    );
    assert.deepEqual(
      results.map((r) => (r.recorded ? 'queued' : r.reason)),
      ['queued', 'mynetworks', 'never_authorize', 'bad_ip', 'stale', 'queued'],
    );
    const q = box.read(0, 10);
    assert.deepEqual(q.map((e) => [e.ip, e.user?.length ?? null, e.at]), [
      ['192.0.2.7', 5, T0 - 1000],
      ['2001:db8::5', 256, T0],
    ]);
    assert.deepEqual(await pm.getState('tail:/old'), { offset: 20 }, 'the position went to the outbox with the logins');
    assert.equal(await local.lookup('192.0.2.7'), undefined, 'no local grant without push_local');
    const both = new PushingMap({ local, outbox: box, recordLocally: true, grace: 1800, mynetworks: new CidrSet(['127.0.0.0/8']), neverAuthorize: new CidrSet([]), clock, logger: log.logger });
    const [r] = await both.recordMany([{ ip: '198.51.100.3', user: 'bob', source: 's' }]);
    assert.equal(r!.recorded, true);
    assert.equal((await local.lookup('198.51.100.3'))?.user, 'bob', 'push_local records here too');
    assert.equal(box.read(0, 10).at(-1)?.ip, '198.51.100.3');
    await box.close();
    await local.close();
  });
});
