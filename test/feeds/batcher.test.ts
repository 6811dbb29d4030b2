// The feeds' write batching (src/feeds/batcher.ts): logins submitted in one event-loop turn share one
// recordMany; the queue is bounded ('overloaded' beyond it); a failed write rejects exactly its batch;
// drain() waits for everything submitted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LoginBatcher } from '../../src/feeds/batcher.ts';
import type { AccessMap, LoginEvent, RecordResult } from '../../src/store/index.ts';

/** A map whose recordMany is controlled by the test (the other methods are not used by the batcher). */
function controlledMap() {
  const calls: LoginEvent[][] = [];
  const pending: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  const map = {
    recordMany(logins: readonly LoginEvent[]): Promise<RecordResult[]> {
      calls.push([...logins]);
      return new Promise((resolve, reject) => {
        pending.push({
          resolve: () => resolve(logins.map((l) => ({ recorded: false, reason: 'mynetworks', detail: l.ip }) as RecordResult)),
          reject,
        });
      });
    },
  } as unknown as AccessMap;
  return { map, calls, pending };
}

test('one turn of logins → one recordMany; each caller gets its own result after the commit', async () => {
  const m = controlledMap();
  const b = new LoginBatcher(m.map);
  const ps = ['192.0.2.1', '192.0.2.2', '192.0.2.3'].map((ip) => b.submit({ ip, source: 'drac' }));
  await new Promise((r) => setImmediate(r));
  assert.equal(m.calls.length, 1);
  assert.deepEqual(m.calls[0]!.map((l) => l.ip), ['192.0.2.1', '192.0.2.2', '192.0.2.3']);
  let settled = false;
  void Promise.all(ps).then(() => (settled = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(settled, false, 'nothing resolves before the write committed');
  m.pending[0]!.resolve();
  const results = await Promise.all(ps);
  assert.deepEqual(results.map((r) => (r === 'overloaded' ? r : r.recorded === false ? r.detail : '')), ['192.0.2.1', '192.0.2.2', '192.0.2.3']);
});

test('bounded: beyond maxQueue (in flight included) submit answers overloaded at once; a failed write rejects its batch only', async () => {
  const m = controlledMap();
  const b = new LoginBatcher(m.map, { maxQueue: 3, maxInFlight: 1 });
  const first = [b.submit({ ip: '192.0.2.1', source: 'drac' }), b.submit({ ip: '192.0.2.2', source: 'drac' })];
  await new Promise((r) => setImmediate(r));
  const third = b.submit({ ip: '192.0.2.3', source: 'drac' }); // waits: one write in flight
  assert.equal(await b.submit({ ip: '192.0.2.4', source: 'drac' }), 'overloaded');
  m.pending[0]!.reject(new Error('injected: disk full'));
  for (const p of first) await assert.rejects(p, /disk full/);
  await new Promise((r) => setImmediate(r));
  assert.equal(m.calls.length, 2, 'the waiting login went out in the next write');
  m.pending[1]!.resolve();
  const r3 = await third;
  assert.notEqual(r3, 'overloaded');
  const drained = b.drain();
  await drained;
});
