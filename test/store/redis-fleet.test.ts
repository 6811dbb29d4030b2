// Two real `relaygate run` daemons on one real Redis: node A (a POP host) only watches a Dovecot log,
// node B (an SMTP node) only runs the SMTP gateway in front of a sink. A login line appended to A's log
// becomes a grant B honours: swaks from that client address relays through B, swaks from a stranger is
// refused. Redis killed: B answers the granted client 451 4.3.0 (temporary, never a permit); Redis back:
// B relays again. `relaygate map` works against the Redis store from either node's configuration.
// All addresses are loopback; every wait is bounded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startRedis, type RedisServer } from '../helpers/redis.ts';
import { startSink, type Sink } from '../helpers/smtp-sink.ts';
import { swaks } from '../helpers/smtp-swaks.ts';
import { run, waitExit } from '../helpers/proc.ts';
import { openAccessMap, type AccessMap, type Grant } from '../../src/store/index.ts';
import { CidrSet } from '../../src/net/index.ts';
import { systemClock } from '../../src/clock.ts';
import { silentLogger } from '../../src/log/logger.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'src/main.ts');
const TSX = import.meta.resolve('tsx');

const GRANTED = '127.0.0.61';
const STRANGER = '127.0.0.62';

let dir: string;
let redis: RedisServer;
let sink: Sink;
const daemons: ChildProcess[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rg-fleet-'));
  redis = await startRedis({ appendonly: true });
  sink = await startSink();
});
after(async () => {
  for (const d of daemons) if (d.exitCode === null && d.signalCode === null) d.kill('SIGKILL');
  await sink?.close();
  await redis?.stop();
  await rm(dir, { recursive: true, force: true });
});

function storeToml(node: string): string[] {
  return ['[store]', 'type = "redis"', `url = "${redis.url}"`, 'key_prefix = "fleet:"', `node_name = "${node}"`, 'timeout = "1s"'];
}

interface Daemon {
  readonly child: ChildProcess;
  readonly lines: Array<Record<string, unknown>>;
  waitEvent(event: string, timeoutMs?: number): Promise<Record<string, unknown>>;
}

function startDaemon(config: string): Daemon {
  const child = spawn(process.execPath, ['--import', TSX, MAIN, 'run', '-c', config], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  daemons.push(child);
  const lines: Array<Record<string, unknown>> = [];
  let buf = '';
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not JSON
      }
    }
  });
  return {
    child,
    lines,
    async waitEvent(event, timeoutMs = 30_000) {
      const end = Date.now() + timeoutMs;
      for (let i = 0; i < 100_000; i++) {
        const hit = lines.find((l) => l.event === event);
        if (hit) return hit;
        if (child.exitCode !== null) throw new Error(`relaygate run exited ${child.exitCode} before ${event}: ${stderr}`);
        if (Date.now() > end) break;
        await sleep(50);
      }
      throw new Error(`no ${event} line within ${timeoutMs} ms: ${stderr}`);
    },
  };
}

function dovecotLogin(ip: string, user: string): string {
  const ts = new Date().toISOString().replace('Z', '000+00:00');
  return `${ts} pop1 dovecot: pop3-login: Login: user=<${user}>, method=PLAIN, rip=${ip}, lip=192.0.2.1, mpid=4711, session=<Xy1+abcd>\n`;
}

/** Polls Redis from this process (an observer on the same keys) until `ip` holds a grant; bounded. */
async function waitGrant(ip: string, timeoutMs = 15_000): Promise<Grant> {
  const end = Date.now() + timeoutMs;
  for (let i = 0; i < 10_000 && Date.now() < end; i++) {
    let map: AccessMap | undefined;
    try {
      map = await openAccessMap({ type: 'redis', url: redis.url, keyPrefix: 'fleet:', nodeName: 'observer', timeoutMs: 500, openTimeoutMs: 500, mynetworks: new CidrSet([]), neverAuthorize: new CidrSet([]), clock: systemClock, logger: silentLogger() });
      const g = await map.lookup(ip);
      if (g) return g;
    } catch {
      // Redis still restarting
    } finally {
      await map?.close();
    }
    await sleep(100);
  }
  throw new Error(`no grant for ${ip} within ${timeoutMs} ms`);
}

async function cli(config: string, ...args: string[]) {
  return run(process.execPath, ['--import', TSX, MAIN, ...args, '-c', config], { timeoutMs: 30_000 });
}

test('two daemons on one Redis: a login on node A lets the client relay through node B; Redis down is 451, back is 250', async () => {
  const log = join(dir, 'mail.log');
  await writeFile(log, '');
  const common = ['log_level = "info"', 'mynetworks = ["127.0.0.10/32"]', 'mydestination = ["local.example"]', 'sweep_interval = "1m"'];
  const configA = join(dir, 'pop-a.toml');
  await writeFile(configA, [`data_dir = "${join(dir, 'a')}"`, ...common, '[[watch]]', `path = "${log}"`, 'format = "dovecot"', 'prefix = "rfc3339"', ...storeToml('pop-a'), ''].join('\n'));
  const configB = join(dir, 'smtp-b.toml');
  await writeFile(
    configB,
    [
      `data_dir = "${join(dir, 'b')}"`,
      ...common,
      '[[listen]]',
      'address = "127.0.0.1:0"',
      'role = "smtp"',
      '[smtp]',
      'hostname = "b.test"',
      `relayhost = "127.0.0.1:${sink.port}"`,
      'peername_lookup = false',
      ...storeToml('smtp-b'),
      '',
    ].join('\n'),
  );
  const check = await cli(configB, 'config', 'check');
  assert.equal(check.code, 0, check.stderr + check.stdout);

  const a = startDaemon(configA);
  const b = startDaemon(configB);
  const started = await a.waitEvent('start');
  assert.match(String(started.store), /^redis:redis:\/\/127\.0\.0\.1:\d+$/);
  const listening = await b.waitEvent('smtp_listening');
  const port = (listening.listeners as Array<{ port: number }>)[0]!.port;

  // Before any login: B refuses to relay for the client.
  let r = await swaks({ port, localAddress: GRANTED, from: 'alice@local.example', to: 'bob@remote.example' });
  assert.match(r.transcript, /<\*\*\s+554 5\.7\.1 <bob@remote\.example>: Relay access denied/);

  await appendFile(log, dovecotLogin(GRANTED, 'alice'));
  // A records it in Redis (bounded poll from this process); B's CLI sees it.
  await waitGrant(GRANTED);
  const query = await cli(configB, 'map', 'query', GRANTED, '--json');
  assert.equal(query.code, 0, `${query.stdout}${query.stderr}`);
  assert.match(query.stdout, /"user": ?"alice"/);

  r = await swaks({ port, localAddress: GRANTED, from: 'alice@local.example', to: 'bob@remote.example', args: ['--h-Subject', 'fleet-1'] });
  assert.equal(r.code, 0, r.transcript);
  await sink.waitFor(1, 10_000);
  assert.ok(sink.messages.some((m) => m.data.includes('fleet-1')), "node B relayed on node A's grant");
  r = await swaks({ port, localAddress: STRANGER, from: 'x@local.example', to: 'bob@remote.example' });
  assert.match(r.transcript, /<\*\*\s+554 5\.7\.1/, 'a client without a grant is refused on B');

  // Redis goes away: temporary failure on B, never a permit, and B keeps running.
  await redis.kill();
  r = await swaks({ port, localAddress: GRANTED, from: 'alice@local.example', to: 'bob@remote.example', args: ['--h-Subject', 'fleet-down'] });
  assert.match(r.transcript, /<\*\*\s+451 4\.3\.0 .*Temporary lookup failure/, r.transcript);
  assert.ok(!sink.messages.some((m) => m.data.includes('fleet-down')));
  assert.equal(b.child.exitCode, null, 'B survives the outage');
  await b.waitEvent('store_unavailable');

  // Back (AOF kept the grant): B relays again once it has reconnected.
  await redis.start();
  let ok = false;
  for (let i = 0; i < 40 && !ok; i++) {
    r = await swaks({ port, localAddress: GRANTED, from: 'alice@local.example', to: 'bob@remote.example', args: ['--h-Subject', `fleet-back-${i}`] });
    ok = r.code === 0;
    if (!ok) await sleep(250);
  }
  assert.ok(ok, `B relays again after Redis is back: ${r.transcript}`);

  // A login written while Redis was down on A's side too is not lost: append during an outage, then restore.
  await redis.kill();
  await appendFile(log, dovecotLogin('127.0.0.64', 'dave'));
  await sleep(300);
  await redis.start();
  assert.equal((await waitGrant('127.0.0.64', 30_000)).user, 'dave', 'the login appended during the outage became a grant');

  // The operator's commands on the shared store.
  const add = await cli(configA, 'map', 'add', '127.0.0.63', '--user', 'carol', '--ttl', '10m');
  assert.equal(add.code, 0, add.stderr);
  const list = await cli(configB, 'map', 'list', '--json');
  assert.deepEqual((JSON.parse(list.stdout) as Array<{ ip: string }>).map((g) => g.ip), [GRANTED, '127.0.0.63', '127.0.0.64']);
  const stats = await cli(configB, 'map', 'stats', '--json');
  const s = JSON.parse(stats.stdout) as { active: number; backend: string };
  assert.equal(s.active, 3);
  assert.match(s.backend, /^redis:redis:\/\/127\.0\.0\.1:\d+$/);
  const del = await cli(configB, 'map', 'del', '127.0.0.63');
  assert.equal(del.code, 0);
  assert.equal((await cli(configA, 'map', 'query', '127.0.0.63')).code, 1, 'deleted through B, gone for A');

  for (const d of [a, b]) d.child.kill('SIGTERM');
  for (const d of [a, b]) {
    assert.ok(await waitExit(d.child, 15_000), 'stops on SIGTERM');
    assert.equal(d.child.exitCode, 0);
  }
});
