// A log watcher writing to the Redis store while Redis goes away: the lines are not lost and not skipped.
// Real file, real tailer, parser and recorder (FileWatch, as `relaygate run` builds it), real redis-server
// killed and restarted on the same port. While Redis is down the batch is retried with back-off (not at
// every poll), the saved position does not move past the unrecorded login, and once Redis is back the
// login becomes a grant exactly as if nothing had happened. Every wait is bounded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { openAccessMap, type AccessMap } from '../../src/store/index.ts';
import { CidrSet } from '../../src/net/index.ts';
import { systemClock } from '../../src/clock.ts';
import { getFormat } from '../../src/sources/formats/index.ts';
import { LineParser } from '../../src/sources/parser.ts';
import { FileWatch } from '../../src/sources/file-watch.ts';
import { captureLogger } from './contract.ts';
import { startRedis, type RedisServer } from '../helpers/redis.ts';

let dir: string;
let redis: RedisServer;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rg-redis-src-'));
  redis = await startRedis({ appendonly: true });
});
after(async () => {
  await redis?.stop();
  await rm(dir, { recursive: true, force: true });
});

function login(ip: string, user: string): string {
  const ts = new Date().toISOString().replace('Z', '000+00:00');
  return `${ts} mx dovecot: imap-login: Login: user=<${user}>, method=PLAIN, rip=${ip}, lip=192.0.2.1, mpid=4242, session=<abcdefgh>\n`;
}

async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (let i = 0; i < 10_000; i++) {
    const v = await check().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) break;
    await sleep(50);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

test('Redis down while a log is tailed: the batch is retried with back-off, the position waits, the login arrives after the restart', async () => {
  const file = join(dir, 'mail.log');
  await writeFile(file, login('192.0.2.41', 'alice'));
  const { logger, lines } = captureLogger();
  const map: AccessMap = await openAccessMap({
    type: 'redis',
    url: redis.url,
    keyPrefix: 'src:',
    nodeName: 'pop1',
    timeoutMs: 300,
    grace: 1800,
    mynetworks: new CidrSet(['127.0.0.0/8']),
    neverAuthorize: new CidrSet([]),
    clock: systemClock,
    logger,
  });
  const watch = new FileWatch({
    path: file,
    parserFactory: () => new LineParser({ format: getFormat('dovecot'), prefix: 'rfc3339' }),
    formatName: 'dovecot',
    map,
    clock: systemClock,
    logger,
    grace: 1800,
    trackLogout: false,
    startAt: 'start',
    pollMs: 50,
    retryMs: { min: 100, max: 400 },
  });
  try {
    await watch.start();
    await waitFor('the first login', () => map.lookup('192.0.2.41'));
    const key = `tail:${file}`;
    const before = (await map.getState(key)) as { offset: number };
    assert.equal(before.offset, (await stat(file)).size);

    await redis.kill();
    await appendFile(file, login('192.0.2.42', 'bob'));
    // The tailer polls every 50 ms and fs.watch fires on the append; with back-off (100, 200, 400, 400 ms ...)
    // 1.5 s of outage is at most ~6 attempts, where retrying at every wake would be ~30.
    await waitFor('a failed attempt', async () => (lines.some((l) => l.event === 'watch_record_failed') ? true : undefined));
    await sleep(1500);
    const attempts = lines.filter((l) => l.event === 'watch_record_failed');
    assert.ok(attempts.length >= 2 && attempts.length <= 10, `${attempts.length} attempts in ~1.5 s: backed off, not one per poll`);
    assert.deepEqual(attempts.slice(0, 3).map((l) => l.retry_in_ms), [100, 200, 400].slice(0, Math.min(3, attempts.length)));
    assert.equal(watch.files()[0]!.logins.logins, 1, 'the pending login is not counted before it is recorded');

    await redis.start();
    const g = await waitFor('the login written while Redis was down', () => map.lookup('192.0.2.42'));
    assert.equal(g.user, 'bob');
    assert.equal(g.count, 1, 'recorded once');
    const after = (await map.getState(key)) as { offset: number };
    assert.equal(after.offset, (await stat(file)).size, 'the position moved on with the grant, and only then');
    assert.ok(lines.some((l) => l.event === 'watch_record_recovered'));
    assert.equal((await map.lookup('192.0.2.41'))?.count, 1, 'the first login was not recorded twice');
  } finally {
    await watch.stop();
    await map.close();
  }
});
