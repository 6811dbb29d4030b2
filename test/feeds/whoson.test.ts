// The whoson server (src/feeds/whoson.ts) over real loopback sockets with raw TCP and UDP clients and a
// real LMDB access map: LOGIN / QUERY / LOGOUT / QUIT, CRLF + empty-line framing (and its errors), the
// two allow lists, a store failure answering `*` (never `+`), the rate limit, and once inside a real
// `relaygate run` whose grant the relay decision then honours.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWhosonServer, type WhosonServer } from '../../src/feeds/whoson.ts';
import { CidrSet } from '../../src/net/index.ts';
import { systemClock } from '../../src/clock.ts';
import type { AccessMap } from '../../src/store/index.ts';
import { captureLogger, type LogLine } from '../store/contract.ts';
import { tempMap, udpExchange, TcpPeer, type TempMap } from './helpers.ts';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pollFor, runOk, waitExit } from '../helpers/proc.ts';

let tm: TempMap;
let server: WhosonServer;
let lines: LogLine[];
let port: number;
let udpPort: number;

// 127.0.0.1: LOGIN/LOGOUT and QUERY; 127.0.0.2: QUERY only (an "Exim host"); 127.0.0.3: nothing
const ALLOW_LOGIN = ['127.0.0.1/32'];
const ALLOW_QUERY = ['127.0.0.1/32', '127.0.0.2/32'];

before(async () => {
  const cap = captureLogger();
  lines = cap.lines;
  tm = await tempMap();
  server = await startWhosonServer({
    listen: [{ host: '127.0.0.1', port: 0 }],
    allowLogin: new CidrSet(ALLOW_LOGIN),
    allowQuery: new CidrSet(ALLOW_QUERY),
    rateLimit: 500,
    map: tm.map,
    logger: cap.logger,
    clock: systemClock,
  });
  port = server.listeners[0]!.tcp.port;
  udpPort = server.listeners[0]!.udp.port;
});

after(async () => {
  await server?.stop();
  await tm?.close();
});

/** Sends `text` on a new connection and returns the replies (split at the empty lines) once `n` arrived. */
async function session(text: string, n: number, from = '127.0.0.1'): Promise<{ replies: string[]; closed: boolean; raw: string }> {
  const peer = await TcpPeer.open(port, { from });
  peer.write(text);
  const raw = (await peer.until((b) => b.toString().split('\r\n\r\n').length - 1 >= n)).toString();
  const closed = await peer.waitClosed(150);
  peer.close();
  return { replies: raw.split('\r\n\r\n').filter((r) => r !== ''), closed, raw };
}

test('TCP: LOGIN makes a grant (source whoson, the user), QUERY answers +user, LOGOUT deletes, QUERY then says -', async () => {
  const { replies, raw } = await session('LOGIN 192.0.2.10 alice\r\n\r\nQUERY 192.0.2.10\r\n\r\nLOGOUT 192.0.2.10\r\n\r\nQUERY 192.0.2.10\r\n\r\nLOGOUT 192.0.2.10\r\n\r\n', 5);
  assert.deepEqual(replies, ['+LOGIN OK', '+alice', '+LOGOUT record deleted', '-Not logged in', '+LOGOUT no such record, nothing done']);
  assert.ok(raw.endsWith('\r\n\r\n'), 'each reply ends with CRLF and an empty line');
  assert.equal(await tm.map.lookup('192.0.2.10'), undefined);
  for (const e of ['whoson_login', 'whoson_query', 'whoson_logout']) assert.ok(lines.some((l) => l.event === e && l.caller_ip === '127.0.0.1'), e);
});

test('LOGIN records source whoson and the userdata (spaces kept); the grant is what the engine and QUERY see', async () => {
  const { replies } = await session('login 192.0.2.11 bob  smith@example.com\r\n\r\n', 1);
  assert.deepEqual(replies, ['+LOGIN OK']);
  const g = await tm.map.lookup('192.0.2.11');
  assert.equal(g?.source, 'whoson');
  assert.equal(g?.user, 'bob smith@example.com');
  const q = await session('QUERY 192.0.2.11\r\n\r\n', 1, '127.0.0.2');
  assert.deepEqual(q.replies, ['+bob smith@example.com']);
});

test('QUIT answers +QUIT OK and closes; bare LF line ends are accepted; IPv6 addresses are normalized', async () => {
  const { replies, closed } = await session('LOGIN 2001:DB8:0:0::1 carol\n\nQUERY 2001:db8::1\n\nQUIT\r\n\r\nQUERY 2001:db8::1\r\n\r\n', 3);
  assert.deepEqual(replies, ['+LOGIN OK', '+carol', '+QUIT OK']);
  assert.equal(closed, true);
  assert.equal((await tm.map.lookup('2001:db8::1'))?.user, 'carol');
});

test('allow lists: QUERY-only caller cannot LOGIN or LOGOUT; a stranger cannot QUERY; refusals are * and logged', async () => {
  await tm.map.record({ ip: '192.0.2.12', user: 'dave', source: 'test' });
  const exim = await session('LOGIN 192.0.2.13 mallory\r\n\r\nLOGOUT 192.0.2.12\r\n\r\nQUERY 192.0.2.12\r\n\r\n', 3, '127.0.0.2');
  assert.deepEqual(exim.replies, ['*Permission denied', '*Permission denied', '+dave']);
  assert.equal(await tm.map.lookup('192.0.2.13'), undefined, 'no grant from a query-only caller');
  assert.ok(await tm.map.lookup('192.0.2.12'), 'LOGOUT refused: grant kept');
  const stranger = await session('QUERY 192.0.2.12\r\n\r\n', 1, '127.0.0.3');
  assert.deepEqual(stranger.replies, ['*Permission denied']);
  assert.ok(lines.some((l) => l.event === 'whoson_refused' && l.caller_ip === '127.0.0.2' && l.command === 'LOGIN'));
  assert.ok(lines.some((l) => l.event === 'whoson_refused' && l.caller_ip === '127.0.0.3' && l.command === 'QUERY'));
});

test('bad requests get * and the connection goes on: unknown command, bad address, missing address, extra arguments, control characters', async () => {
  const { replies, closed } = await session(
    'HELLO\r\n\r\nLOGIN not-an-ip eve\r\n\r\nQUERY\r\n\r\nLOGOUT 192.0.2.1 extra\r\n\r\nLOGIN 192.0.2.14 ev\u0007e\r\n\r\nQUERY 192.0.2.14\r\n\r\n',
    6,
  );
  assert.equal(replies.length, 6);
  for (const r of replies.slice(0, 5)) assert.match(r, /^\*/);
  assert.equal(replies[5], '-Not logged in');
  assert.equal(closed, false);
  assert.ok(lines.some((l) => l.event === 'whoson_bad_request' && /unknown command/.test(String(l.reason))));
});

test('framing errors close the connection after a * reply: no empty line after a request, an over-long line', async () => {
  const a = await session('QUERY 192.0.2.1\r\nQUERY 192.0.2.2\r\n\r\n', 1);
  assert.deepEqual(a.replies, ['*Bad request: a request line must be followed by an empty line']);
  assert.equal(a.closed, true);
  const b = await session(`LOGIN 192.0.2.15 ${'x'.repeat(2000)}`, 1);
  assert.match(b.replies[0]!, /^\*Bad request: line longer than 1024 bytes/);
  assert.equal(b.closed, true);
  assert.equal(await tm.map.lookup('192.0.2.15'), undefined);
  // userdata over 256 characters on a line under 1024: refused, the connection goes on
  const c = await session(`LOGIN 192.0.2.16 ${'u'.repeat(300)}\r\n\r\nQUERY 192.0.2.16\r\n\r\n`, 2);
  assert.match(c.replies[0]!, /^\*Bad request: userdata longer than 256/);
  assert.equal(c.replies[1], '-Not logged in');
});

test('UDP: one request per datagram, same replies; bad datagrams get *; strangers get no reply larger than their datagram', async () => {
  const ask = async (text: string, from = '127.0.0.1') => (await udpExchange(udpPort, Buffer.from(text), { from, timeoutMs: 500 }))?.toString();
  assert.equal(await ask('LOGIN 192.0.2.20 frank\r\n\r\n'), '+LOGIN OK\r\n\r\n');
  assert.equal(await ask('QUERY 192.0.2.20\r\n\r\n', '127.0.0.2'), '+frank\r\n\r\n');
  assert.equal((await tm.map.lookup('192.0.2.20'))?.source, 'whoson');
  assert.equal(await ask('LOGOUT 192.0.2.20\r\n\r\n'), '+LOGOUT record deleted\r\n\r\n');
  assert.equal(await ask('QUERY 192.0.2.20'), '-Not logged in\r\n\r\n', 'without the empty line too');
  assert.match((await ask('QUERY 192.0.2.20\r\n\r\nQUERY 192.0.2.21\r\n\r\n')) ?? '', /^\*Bad request: one request per datagram/);
  assert.equal(await ask('QUIT\r\n\r\n'), '+QUIT OK\r\n\r\n');
  // 127.0.0.3 is in neither list: "*Permission denied\r\n\r\n" (22 bytes) is longer than "QUERY ::1" (9): no reply
  assert.equal(await ask('QUERY ::1', '127.0.0.3'), undefined);
  assert.equal(await ask('QUERY 192.0.2.20\r\n\r\n       ', '127.0.0.3'), '*Permission denied\r\n\r\n');
});

test('a store that fails answers * (temporary error) to QUERY, LOGIN and LOGOUT, never +', async () => {
  const broken: AccessMap = new Proxy(tm.map, {
    get(target, prop, recv) {
      if (prop === 'lookup' || prop === 'recordMany' || prop === 'delete') return () => Promise.reject(new Error('injected: mdb_get failed'));
      return Reflect.get(target, prop, recv) as unknown;
    },
  });
  await tm.map.record({ ip: '192.0.2.30', user: 'gina', source: 'test' });
  const cap = captureLogger();
  const s = await startWhosonServer({ listen: [{ host: '127.0.0.1', port: 0 }], allowLogin: new CidrSet(ALLOW_LOGIN), allowQuery: new CidrSet(ALLOW_QUERY), rateLimit: 100, map: broken, logger: cap.logger, clock: systemClock });
  try {
    const peer = await TcpPeer.open(s.listeners[0]!.tcp.port);
    peer.write('QUERY 192.0.2.30\r\n\r\nLOGIN 192.0.2.31 hank\r\n\r\nLOGOUT 192.0.2.30\r\n\r\n');
    const raw = (await peer.until((b) => b.toString().split('\r\n\r\n').length - 1 >= 3)).toString();
    peer.close();
    const replies = raw.split('\r\n\r\n').filter((r) => r !== '');
    assert.deepEqual(replies, ['*Temporary failure: access map unavailable', '*Temporary failure: access map unavailable', '*Temporary failure: access map unavailable']);
    assert.equal(cap.lines.filter((l) => l.event === 'whoson_store_error').length, 3);
  } finally {
    await s.stop();
  }
});

test('the per-caller rate limit refuses the excess with * over TCP and stays bounded', async () => {
  const cap = captureLogger();
  const s = await startWhosonServer({ listen: [{ host: '127.0.0.1', port: 0 }], allowLogin: new CidrSet(ALLOW_LOGIN), allowQuery: new CidrSet(ALLOW_QUERY), rateLimit: 20, map: tm.map, logger: cap.logger, clock: systemClock });
  try {
    const peer = await TcpPeer.open(s.listeners[0]!.tcp.port);
    peer.write('QUERY 192.0.2.40\r\n\r\n'.repeat(60));
    const raw = (await peer.until((b) => b.toString().split('\r\n\r\n').length - 1 >= 60, 5000)).toString();
    peer.close();
    const replies = raw.split('\r\n\r\n').filter((r) => r !== '');
    assert.equal(replies.length, 60);
    const limited = replies.filter((r) => r.startsWith('*Too many requests')).length;
    assert.ok(limited >= 30 && limited <= 40, `refused ${limited} of 60 with a burst of 20`);
    assert.equal(cap.lines.filter((l) => l.event === 'whoson_rate_limited').length, 1, 'one log line for the burst');
  } finally {
    await s.stop();
  }
});

test('inside `relaygate run`: a whoson LOGIN becomes a grant that permit_pop_before_smtp honours (relaygate check)', async () => {
  const main = join(resolve(import.meta.dirname, '../..'), 'src/main.ts');
  const tsx = import.meta.resolve('tsx');
  const conf = join(tm.dir, 'relaygate.toml');
  await writeFile(conf, [`data_dir = ${JSON.stringify(join(tm.dir, 'daemon'))}`, '[whoson]', 'listen = "127.0.0.1:0"', ''].join('\n'));
  const daemon = spawn(process.execPath, ['--import', tsx, main, 'run', '-c', conf], { cwd: tm.dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const logged: Array<Record<string, unknown>> = [];
  let buf = '';
  daemon.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    for (const p of parts) if (p.trim() !== '') logged.push(JSON.parse(p) as Record<string, unknown>);
  });
  try {
    const listening = await pollFor(() => logged.find((l) => l.event === 'whoson_listening'), 20_000);
    assert.ok(listening, 'whoson_listening logged');
    assert.ok(await pollFor(() => logged.find((l) => l.event === 'components' && Array.isArray(l.feeds) && (l.feeds as string[]).some((f) => f.startsWith('whoson 127.0.0.1:'))), 5000));
    const peer = await TcpPeer.open(Number(listening.port));
    peer.write('LOGIN 192.0.2.50 ivan\r\n\r\n');
    assert.equal((await peer.until((b) => b.includes('\r\n\r\n'))).toString(), '+LOGIN OK\r\n\r\n');
    peer.close();
    const check = await runOk(process.execPath, ['--import', tsx, main, 'check', '-c', conf, '--client', '192.0.2.50', '--rcpt', 'bob@remote.example'], { timeoutMs: 30_000 });
    assert.match(check.stdout, /RCPT: PERMIT by permit_pop_before_smtp/);
    assert.match(check.stdout, /user=ivan source=whoson/);
  } finally {
    daemon.kill('SIGTERM');
    assert.equal(await waitExit(daemon, 15_000), true);
  }
  assert.equal(daemon.exitCode, 0);
  assert.ok(logged.some((l) => l.event === 'whoson_stopped'));
});
