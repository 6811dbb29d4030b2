// The worker pool for SHA-crypt and bcrypt: right answers, the main thread stays free, deadlines kill work.
//
// Debian packages: dovecot-core (doveadm pw).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CryptPool } from '../../src/auth/crypt-pool.ts';
import { doveadmPw } from './tools.ts';

const setting = (h: string): string => h.slice(0, h.lastIndexOf('$'));

test('crypt() reproduces doveadm SHA512-CRYPT and BLF-CRYPT strings', async () => {
  const pool = new CryptPool({ size: 1 });
  try {
    const sha = (await doveadmPw('SHA512-CRYPT', 'pw')).slice('{SHA512-CRYPT}'.length);
    const blf = (await doveadmPw('BLF-CRYPT', 'pw')).slice('{BLF-CRYPT}'.length);
    assert.equal(await pool.crypt('sha-crypt', 'pw', setting(sha), 10_000), sha);
    assert.equal(await pool.crypt('bcrypt', 'pw', blf.slice(0, 29), 10_000), blf);
  } finally {
    await pool.close();
  }
});

test('a slow hash runs off the main thread: timers keep firing while it computes', async () => {
  const pool = new CryptPool({ size: 1 });
  try {
    const slow = (await doveadmPw('SHA512-CRYPT', 'pw', 400_000)).slice('{SHA512-CRYPT}'.length);
    let maxGap = 0;
    let last = performance.now();
    const tick = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
    }, 10);
    const started = performance.now();
    const out = await pool.crypt('sha-crypt', 'pw', setting(slow), 60_000);
    const took = performance.now() - started;
    clearInterval(tick);
    assert.equal(out, slow);
    assert.ok(took > 200, `expected a slow hash, took ${took.toFixed(0)} ms`);
    assert.ok(maxGap < 400, `event loop stalled for ${maxGap.toFixed(0)} ms`);
  } finally {
    await pool.close();
  }
});

test('a task past its deadline rejects and its worker is replaced', async () => {
  const pool = new CryptPool({ size: 1 });
  try {
    const slow = (await doveadmPw('SHA512-CRYPT', 'pw', 2_000_000)).slice('{SHA512-CRYPT}'.length);
    const started = performance.now();
    await assert.rejects(pool.crypt('sha-crypt', 'pw', setting(slow), 200), /longer than 200 ms/);
    assert.ok(performance.now() - started < 2_000);
    const fast = (await doveadmPw('SHA256-CRYPT', 'pw')).slice('{SHA256-CRYPT}'.length);
    assert.equal(await pool.crypt('sha-crypt', 'pw', setting(fast), 10_000), fast);
  } finally {
    await pool.close();
  }
});

test('library errors reject; a closed pool rejects', async () => {
  const pool = new CryptPool({ size: 1 });
  await assert.rejects(pool.crypt('sha-crypt', 'pw', '$6$bad salt!', 10_000), /Invalid salt/);
  await pool.close();
  await assert.rejects(pool.crypt('sha-crypt', 'pw', '$6$abc', 10_000), /closed/);
});
