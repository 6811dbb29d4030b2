// The Redis store on the two other topologies node-redis speaks, with real redis-server processes on
// loopback: a three-master Redis Cluster (created with redis-cli --cluster create; relaygate's keys share
// one hash tag, so every script runs on one shard and is routed there from any seed node), and a master +
// replica watched by one Sentinel, where the master dies: lookups fail temporary during the failover and
// then answer from the promoted replica, grant intact. Bounded waits throughout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openAccessMap, type AccessMap } from '../../src/store/index.ts';
import { CidrSet } from '../../src/net/index.ts';
import { manualClock } from '../../src/clock.ts';
import { silentLogger } from '../../src/log/logger.ts';
import { isRelaygateError } from '../../src/errors.ts';
import { run } from '../helpers/proc.ts';
import { startRedis, type RedisServer } from '../helpers/redis.ts';

const T0 = Date.UTC(2025, 0, 15, 12);
const env = () => ({ grace: 1800, mynetworks: new CidrSet(['127.0.0.0/8']), neverAuthorize: new CidrSet([]), clock: manualClock(T0), logger: silentLogger() });

async function exercise(map: AccessMap): Promise<void> {
  assert.equal((await map.record({ ip: '192.0.2.1', user: 'alice', source: 'dovecot' })).recorded, true);
  const rs = await map.recordMany([{ ip: '192.0.2.1', source: 'drac' }, { ip: '2001:db8::9', user: 'bob', source: 'feed', ttl: 60 }], { 'tail:/log': { offset: 9 } });
  assert.deepEqual(rs.map((r) => r.recorded && r.grant.count), [2, 1]);
  assert.deepEqual(await map.getState('tail:/log'), { offset: 9 });
  assert.equal((await map.lookup('192.0.2.1'))?.source, 'drac');
  assert.deepEqual((await map.list()).map((g) => g.ip), ['192.0.2.1', '2001:db8::9']);
  assert.equal(await map.sweep(T0 + 60_000), 1);
  assert.equal((await map.stats()).active, 1);
  assert.equal(await map.delete('192.0.2.1'), true);
}

test('Redis Cluster (3 masters): every operation works from any seed node; keys share the prefix hash tag', async () => {
  const nodes: RedisServer[] = [];
  try {
    for (let i = 0; i < 3; i++) nodes.push(await startRedis({ args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000'] }));
    const created = await run('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-yes'], { timeoutMs: 30_000 });
    assert.equal(created.code, 0, created.stdout + created.stderr);
    // Every node must see the cluster as ok (each learns the others' slots by gossip, not at the same moment);
    // a node still converging answers CLUSTERDOWN.
    let converged = false;
    for (let i = 0; i < 300 && !converged; i++) {
      const states = await Promise.all(nodes.map(async (n) => /cluster_state:ok/.test(String(await n.command('CLUSTER', 'INFO')))));
      converged = states.every(Boolean);
      if (!converged) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(converged, 'the cluster reached cluster_state:ok on every node within 30 s');
    // The {relaygate} tag's slot lives on one master; seed through another one to exercise the redirect.
    const slot = Number(await nodes[0]!.command('CLUSTER', 'KEYSLOT', '{relaygate}:expiry'));
    const owners = (await nodes[0]!.command('CLUSTER', 'SLOTS')) as Array<[number, number, [string, number]]>;
    const owner = owners.find(([from, to]) => slot >= from && slot <= to)![2][1];
    const seed = nodes.find((n) => n.port !== owner)!;
    const map = await openAccessMap({ type: 'redis', url: seed.url, cluster: true, nodes: nodes.map((n) => `127.0.0.1:${n.port}`), keyPrefix: '{relaygate}:', ...env() });
    try {
      await exercise(map);
      assert.equal(Number(await nodes.find((n) => n.port === owner)!.command('EXISTS', '{relaygate}:format')), 1, 'the keys live on the owner of the tag slot');
    } finally {
      await map.close();
    }
  } finally {
    for (const n of nodes) await n.stop();
  }
});

test('Redis Sentinel: a master failover is a temporary failure; afterwards the promoted replica answers with the grant', async () => {
  const master = await startRedis();
  const replica = await startRedis({ args: ['--replicaof', '127.0.0.1', String(master.port)] });
  const sentinel = await startRedis({
    sentinel: [`sentinel monitor mymaster 127.0.0.1 ${master.port} 1`, 'sentinel down-after-milliseconds mymaster 500', 'sentinel failover-timeout mymaster 3000'],
  });
  let map: AccessMap | undefined;
  try {
    map = await openAccessMap({ type: 'redis', url: sentinel.url, sentinelMaster: 'mymaster', keyPrefix: 'rg:', timeoutMs: 500, ...env() });
    await exercise(map);
    await map.record({ ip: '192.0.2.50', user: 'carol', source: 'dovecot' });
    // Let the replica catch up (the grant visible there), then kill the master.
    let replicated = false;
    for (let i = 0; i < 100 && !replicated; i++) {
      replicated = Number(await replica.command('EXISTS', 'rg:grant:192.0.2.50')) === 1;
      if (!replicated) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(replicated, 'the replica has the grant');
    await master.kill();
    let failures = 0;
    let found: string | null | undefined;
    for (let i = 0; i < 150 && found === undefined; i++) {
      try {
        found = (await map.lookup('192.0.2.50'))?.user ?? null;
      } catch (err) {
        assert.ok(isRelaygateError(err) && err.code === 'RG_ERR_STORE_IO', String(err));
        failures++;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    assert.equal(found, 'carol', 'the promoted replica holds the grant');
    assert.ok(failures > 0, 'the failover was seen as temporary failures, not as "no grant"');
    assert.equal(String(await sentinel.command('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'mymaster')).includes(String(replica.port)), true);
    assert.equal((await map.record({ ip: '192.0.2.51', source: 't' })).recorded, true, 'writes go to the new master');
  } finally {
    await map?.close();
    for (const r of [sentinel, replica, master]) await r.stop();
  }
});
