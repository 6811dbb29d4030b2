// The sweeper: runs on its own (unref'd) timer, never overlaps itself, logs non-empty sweeps at info and
// failures at error, and never lets an error escape a timer. Fake maps control timing; one test uses the
// real LMDB map end to end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startSweeper, openAccessMap } from '../../src/store/index.ts';
import { CidrSet } from '../../src/net/index.ts';
import { manualClock } from '../../src/clock.ts';
import { silentLogger } from '../../src/log/logger.ts';
import { captureLogger, T0 } from './contract.ts';

/** A stand-in map whose sweep takes `ms` and returns `n`, recording how many ran at once. */
function fakeMap(opts: { ms?: number; n?: number; fail?: () => boolean } = {}) {
  const state = { calls: 0, active: 0, maxActive: 0, nows: [] as number[] };
  return {
    state,
    async sweep(now?: number): Promise<number> {
      state.calls++;
      state.active++;
      state.maxActive = Math.max(state.maxActive, state.active);
      state.nows.push(now ?? -1);
      try {
        await sleep(opts.ms ?? 0);
        if (opts.fail?.()) throw new Error('MDB_PANIC: simulated');
        return opts.n ?? 0;
      } finally {
        state.active--;
      }
    },
  };
}

async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

test('sweeps on its own timer, with the clock it was given, until stopped', async () => {
  const map = fakeMap();
  const clock = manualClock(T0);
  const s = startSweeper({ map, intervalMs: 10, clock, logger: silentLogger() });
  await until(() => map.state.calls >= 3, 'three timer sweeps');
  assert.ok(map.state.nows.every((n) => n === T0), 'sweep(now) uses the injected clock');
  await s.stop();
  const calls = map.state.calls;
  await sleep(50);
  assert.equal(map.state.calls, calls, 'no sweep after stop()');
  assert.equal(await s.runNow(), 0, 'runNow after stop sweeps nothing');
  assert.equal(map.state.calls, calls);
});

test('never overlaps itself: a slow sweep delays the next, runNow joins the running one', async () => {
  const map = fakeMap({ ms: 60, n: 4 });
  const s = startSweeper({ map, intervalMs: 1, clock: () => T0, logger: silentLogger() });
  const a = s.runNow();
  const b = s.runNow();
  assert.equal(a, b, 'the same sweep is returned');
  assert.equal(await a, 4);
  await until(() => map.state.calls >= 3, 'more sweeps');
  await s.stop();
  assert.equal(map.state.maxActive, 1, 'at most one sweep at a time');
});

test('stop() waits for the sweep in progress', async () => {
  const map = fakeMap({ ms: 80, n: 1 });
  const s = startSweeper({ map, intervalMs: 60_000, clock: () => T0, logger: silentLogger() });
  const run = s.runNow();
  await sleep(5);
  await s.stop();
  assert.equal(map.state.active, 0, 'the sweep had finished when stop() resolved');
  assert.equal(await run, 1);
});

test('logs each non-empty sweep at info with count and ms; empty sweeps stay quiet', async () => {
  const { logger, lines } = captureLogger();
  let n = 0;
  const map = { sweep: async () => n };
  const s = startSweeper({ map, intervalMs: 60_000, clock: () => T0, logger });
  assert.equal(await s.runNow(), 0);
  assert.equal(lines.filter((l) => l.event === 'sweep').length, 0);
  n = 17;
  assert.equal(await s.runNow(), 17);
  const line = lines.find((l) => l.event === 'sweep');
  assert.equal(line?.level, 'info');
  assert.equal(line?.swept, 17);
  assert.equal(typeof line?.ms, 'number');
  assert.match(line?.msg ?? '', /swept 17 expired grant\(s\) in \d+ ms/);
  await s.stop();
});

test('errors are logged at error, rejected from runNow, and the timer keeps going', async () => {
  const { logger, lines } = captureLogger();
  let failing = true;
  const map = fakeMap({ n: 2, fail: () => failing });
  const s = startSweeper({ map, intervalMs: 5, clock: () => T0, logger });
  await until(() => map.state.calls >= 3, 'retries after failures');
  const failed = lines.filter((l) => l.event === 'sweep_failed');
  assert.ok(failed.length >= 2, 'every failure is logged');
  assert.ok(failed.every((l) => l.level === 'error' && /MDB_PANIC/.test(l.msg)));
  await assert.rejects(s.runNow(), /MDB_PANIC/);
  failing = false;
  await until(() => lines.some((l) => l.event === 'sweep'), 'a successful sweep after the failures');
  await s.stop();
});

test('refuses a non-positive interval when built', () => {
  assert.throws(() => startSweeper({ map: fakeMap(), intervalMs: 0, clock: () => T0, logger: silentLogger() }), RangeError);
});

test('the timer is unref\'d: a process with a running sweeper still exits on its own', async () => {
  const sweeperUrl = new URL('../../src/store/sweeper.ts', import.meta.url).href;
  const logUrl = new URL('../../src/log/logger.ts', import.meta.url).href;
  const script = `
    const { startSweeper } = await import(${JSON.stringify(sweeperUrl)});
    const { silentLogger } = await import(${JSON.stringify(logUrl)});
    startSweeper({ map: { sweep: async () => 0 }, intervalMs: 3_600_000, clock: () => Date.now(), logger: silentLogger() });
    process.stdout.write('started');
  `;
  const started = Date.now();
  const out = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { timeout: 20_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
    );
  });
  assert.equal(out, 'started');
  assert.ok(Date.now() - started < 20_000);
});

test('end to end on LMDB: runNow removes expired grants and the map reports the sweep', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rg-sweeper-'));
  const clock = manualClock(T0);
  const { logger, lines } = captureLogger();
  const map = await openAccessMap({ type: 'lmdb', path: join(dir, 'map'), grace: 60, mynetworks: new CidrSet([]), neverAuthorize: new CidrSet([]), clock, logger });
  const s = startSweeper({ map, intervalMs: 60_000, clock, logger });
  try {
    await map.recordMany([
      { ip: '192.0.2.1', source: 't' },
      { ip: '192.0.2.2', source: 't' },
      { ip: '192.0.2.3', source: 't', ttl: 3600 },
    ]);
    assert.equal(await s.runNow(), 0);
    clock.advance(60_000);
    assert.equal(await s.runNow(), 2);
    const st = await map.stats();
    assert.deepEqual([st.active, st.expiredPending, st.swept, st.lastSweepAt], [1, 0, 2, T0 + 60_000]);
    assert.equal(lines.find((l) => l.event === 'sweep')?.swept, 2);
  } finally {
    await s.stop();
    await map.close();
    await rm(dir, { recursive: true, force: true });
  }
});
