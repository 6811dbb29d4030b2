// AuthThrottle: growing delay, lockout per IP, delay per username, forgiveness on success, sliding windows,
// bounded memory — all on a manual clock.
//
// Debian packages: none.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AuthThrottle, THROTTLE_DEFAULTS } from '../../src/auth/throttle.ts';
import { manualClock } from '../../src/clock.ts';

const MIN = 60_000;

test('defaults: 1 free failure, then 1 s, 2 s, 4 s; the 5th failure in 10 min locks the IP out for 15 min', () => {
  const clock = manualClock(1_000_000);
  const t = new AuthThrottle(clock);
  assert.deepEqual(THROTTLE_DEFAULTS, { maxFailures: 5, window: 10 * MIN, lockout: 15 * MIN, freeFailures: 1, baseDelayMs: 1000, maxDelayMs: 30_000, maxEntries: 100_000 });
  const ip = '192.0.2.9';
  assert.deepEqual(t.check(ip, 'alice'), { action: 'allow' });
  assert.deepEqual(t.fail(ip, 'alice'), { action: 'allow' });
  assert.deepEqual(t.fail(ip, 'bob'), { action: 'delay', ms: 1000 });
  assert.deepEqual(t.fail(ip, 'carol'), { action: 'delay', ms: 2000 });
  assert.deepEqual(t.fail(ip, 'dave'), { action: 'delay', ms: 4000 });
  assert.deepEqual(t.check(ip), { action: 'allow' });
  const until = clock() + 15 * MIN;
  assert.deepEqual(t.fail(ip, 'erin'), { action: 'block', until });
  assert.deepEqual(t.check(ip, 'alice'), { action: 'block', until });
  assert.deepEqual(t.check('192.0.2.10', 'alice'), { action: 'allow' }, 'other IPs are not locked out');
  clock.advance(15 * MIN - 1);
  assert.equal(t.check(ip).action, 'block');
  clock.advance(1);
  assert.deepEqual(t.check(ip), { action: 'allow' });
  assert.deepEqual(t.fail(ip, 'x'), { action: 'allow' }, 'a fresh start after the lockout');
});

test('the window slides: failures older than the window no longer count', () => {
  const clock = manualClock(0);
  const t = new AuthThrottle(clock, { maxFailures: 3, window: 10 * MIN, freeFailures: 0 });
  assert.deepEqual(t.fail('192.0.2.1'), { action: 'delay', ms: 1000 });
  clock.advance(6 * MIN);
  assert.deepEqual(t.fail('192.0.2.1'), { action: 'delay', ms: 2000 });
  clock.advance(5 * MIN); // the first failure is now 11 min old
  assert.deepEqual(t.fail('192.0.2.1'), { action: 'delay', ms: 2000 }, 'two in the window, not three');
  assert.equal(t.fail('192.0.2.1').action, 'block');
});

test('successes are never slowed: check() only ever allows or blocks', () => {
  const clock = manualClock(0);
  const t = new AuthThrottle(clock);
  for (let i = 0; i < 4; i++) t.fail('192.0.2.1', 'alice');
  assert.deepEqual(t.check('192.0.2.1', 'alice'), { action: 'allow' });
});

test('per username: an attack spread over many IPs grows the delay, but never locks the user out', () => {
  const clock = manualClock(0);
  const t = new AuthThrottle(clock, { maxDelayMs: 8000 });
  const verdicts = Array.from({ length: 8 }, (_, i) => t.fail(`198.51.100.${i + 1}`, 'Alice'));
  assert.deepEqual(verdicts.map((v) => (v.action === 'delay' ? v.ms : v.action)), ['allow', 1000, 2000, 4000, 8000, 8000, 8000, 8000]);
  assert.equal(t.fail('198.51.100.99', 'ALICE').action, 'delay', 'usernames are compared case-insensitively');
  assert.deepEqual(t.check('203.0.113.5', 'alice'), { action: 'allow' }, 'the real user can still try from elsewhere');
  clock.advance(10 * MIN);
  assert.deepEqual(t.fail('198.51.100.1', 'alice'), { action: 'allow' }, 'the username window slid too');
});

test("succeed(): forgives the user's own failures, not the IP's failures for other usernames", () => {
  const clock = manualClock(0);
  const t = new AuthThrottle(clock, { maxFailures: 4 });
  const ip = '192.0.2.50';
  t.fail(ip, 'alice');
  t.fail(ip, 'alice');
  t.fail(ip, 'mallory-target');
  t.succeed(ip, 'alice'); // alice typed it right at last
  assert.deepEqual(t.fail(ip, 'bob'), { action: 'delay', ms: 1000 }, 'only 2 failures left on the IP');
  assert.deepEqual(t.fail(ip, 'carol'), { action: 'delay', ms: 2000 });
  assert.equal(t.fail(ip, 'dave').action, 'block', 'the failures for other users still count');
  t.succeed(ip, 'dave');
  assert.equal(t.check(ip).action, 'block', 'a success does not lift a lockout');
});

test('memory is bounded: a flood of distinct IPs and usernames keeps at most maxEntries records each', () => {
  const clock = manualClock(0);
  const t = new AuthThrottle(clock, { maxEntries: 1000 });
  for (let i = 0; i < 20_000; i++) {
    t.fail(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, `user${i}`);
    if (i % 1000 === 0) clock.advance(1000);
  }
  assert.ok(t.size.ips <= 1000, `ips ${t.size.ips}`);
  assert.ok(t.size.users <= 1000, `users ${t.size.users}`);
  clock.advance(11 * MIN);
  t.sweep();
  assert.deepEqual(t.size, { ips: 0, users: 0 });
});

test('expired records are reused before live ones are evicted; a lockout survives a sweep', () => {
  const clock = manualClock(0);
  const t = new AuthThrottle(clock, { maxEntries: 3, maxFailures: 1 });
  assert.equal(t.fail('192.0.2.1').action, 'block');
  clock.advance(11 * MIN);
  t.sweep();
  assert.equal(t.check('192.0.2.1').action, 'block');
  assert.equal(t.size.ips, 1);
  clock.advance(5 * MIN);
  t.sweep();
  assert.equal(t.size.ips, 0);
});

test('the delay is capped and options are validated', () => {
  const t = new AuthThrottle(manualClock(0), { baseDelayMs: 500, maxDelayMs: 3000, freeFailures: 2 });
  assert.deepEqual([1, 2, 3, 4, 5, 6, 100].map((n) => t.delayFor(n)), [0, 0, 500, 1000, 2000, 3000, 3000]);
  assert.throws(() => new AuthThrottle(manualClock(0), { maxFailures: 0 }), RangeError);
  assert.throws(() => new AuthThrottle(manualClock(0), { window: -1 }), RangeError);
  assert.throws(() => new AuthThrottle(manualClock(0), { baseDelayMs: 1.5 }), RangeError);
});
