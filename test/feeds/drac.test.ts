// The DRAC server (src/feeds/drac.ts) over real loopback sockets, with raw UDP and TCP clients and a real
// LMDB access map: v1 and v2 ADD become grants (source drac, no user), NULL answers anyone, a caller not
// allowed gets ADD_PERM, and every hostile frame gets the RPC-standard reply or is dropped while the
// server keeps answering. The portmapper is off here (rpcbind = false); drac-rpcbind.test.ts covers it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { startDracServer, AddStat, type DracServer } from '../../src/feeds/drac.ts';
import { allowSet, parseDracAllow, readDracAllow } from '../../src/feeds/allow.ts';
import { CidrSet } from '../../src/net/index.ts';
import { systemClock } from '../../src/clock.ts';
import { isRelaygateError } from '../../src/errors.ts';
import { captureLogger, type LogLine } from '../store/contract.ts';
import { tempMap, udpExchange, TcpPeer, rpcCall, v1Arg, v2Arg, v6Bytes, recordMark, decodeReply, words, type TempMap } from './helpers.ts';

let tm: TempMap;
let server: DracServer;
let lines: LogLine[];
let udpPort: number;
let tcpPort: number;

before(async () => {
  const cap = captureLogger();
  lines = cap.lines;
  tm = await tempMap();
  server = await startDracServer({
    listenUdp: [{ host: '127.0.0.1', port: 0 }],
    listenTcp: [{ host: '127.0.0.1', port: 0 }],
    // 127.0.0.1 and 127.0.0.3 may add; 127.0.0.2 may not
    allow: new CidrSet(['127.0.0.1/32', '127.0.0.3/32']),
    rpcbind: false,
    rateLimit: 200,
    map: tm.map,
    logger: cap.logger,
    clock: systemClock,
  });
  udpPort = server.udp[0]!.port;
  tcpPort = server.tcp[0]!.port;
});

after(async () => {
  await server?.stop();
  await tm?.close();
});

async function udp(msg: Buffer, from = '127.0.0.1') {
  const r = await udpExchange(udpPort, msg, { from });
  return r === undefined ? undefined : decodeReply(r);
}

test('v1 ADD over UDP: ADD_SUCCESS, a grant with source drac and no user, logged as drac_add', async () => {
  const reply = await udp(rpcCall({ xid: 1001, vers: 1, proc: 1, args: v1Arg('192.0.2.10') }));
  assert.deepEqual(reply, { xid: 1001, status: 'accepted', acceptStat: 0, result: AddStat.ADD_SUCCESS, length: 28 });
  const g = await tm.map.lookup('192.0.2.10');
  assert.ok(g, 'grant recorded');
  assert.equal(g.source, 'drac');
  assert.equal(g.user, null);
  assert.ok(lines.some((l) => l.event === 'drac_add' && l.client_ip === '192.0.2.10' && l.caller_ip === '127.0.0.1' && l.result === 'ADD_SUCCESS'));
});

test('a DRAC login clears the user an earlier log-watcher login stored (the grant says who logged in last)', async () => {
  await tm.map.record({ ip: '192.0.2.11', user: 'alice', source: 'dovecot:/var/log/mail.log' });
  assert.equal((await tm.map.lookup('192.0.2.11'))?.user, 'alice');
  const reply = await udp(rpcCall({ xid: 1002, args: v1Arg('192.0.2.11') }));
  assert.equal(reply?.result, AddStat.ADD_SUCCESS);
  const g = await tm.map.lookup('192.0.2.11');
  assert.equal(g?.user, null);
  assert.equal(g?.source, 'drac');
});

test('v2 ADD (IPv6 as 16 XDR ints, sign-extended bytes) over UDP and TCP; an IPv4-mapped address becomes IPv4', async () => {
  const r1 = await udp(rpcCall({ xid: 2001, vers: 2, args: v2Arg(v6Bytes('2001:0db8:00ff:0000:0000:0000:fefe:0080')) }));
  assert.equal(r1?.result, AddStat.ADD_SUCCESS);
  assert.equal((await tm.map.lookup('2001:db8:ff::fefe:80'))?.source, 'drac');
  // not sign-extended (0..255) is accepted as well
  const r2 = await udp(rpcCall({ xid: 2002, vers: 2, args: v2Arg(v6Bytes('2001:0db8:0000:0000:0000:0000:0000:00ff'), false) }));
  assert.equal(r2?.result, AddStat.ADD_SUCCESS);
  assert.ok(await tm.map.lookup('2001:db8::ff'));
  const peer = await TcpPeer.open(tcpPort);
  const call = rpcCall({ xid: 2003, vers: 2, args: v2Arg(v6Bytes('0000:0000:0000:0000:0000:ffff:c000:0263')) });
  peer.write(Buffer.concat([recordMark(call.length, true), call]));
  const got = await peer.until((b) => b.length >= 32);
  peer.close();
  assert.equal(got.readUInt32BE(0), (0x80000000 | 28) >>> 0, 'one last fragment of 28 bytes');
  assert.equal(decodeReply(got.subarray(4)).result, AddStat.ADD_SUCCESS);
  assert.ok(await tm.map.lookup('192.0.2.99'), '::ffff:192.0.2.99 stored as 192.0.2.99');
});

test('a caller not in the allow list gets ADD_PERM and no grant; NULL still answers it', async () => {
  const reply = await udp(rpcCall({ xid: 3001, args: v1Arg('192.0.2.30') }), '127.0.0.2');
  assert.deepEqual(reply, { xid: 3001, status: 'accepted', acceptStat: 0, result: AddStat.ADD_PERM, length: 28 });
  assert.equal(await tm.map.lookup('192.0.2.30'), undefined);
  assert.ok(lines.some((l) => l.event === 'drac_refused' && l.caller_ip === '127.0.0.2' && l.reason === 'not_allowed' && l.result === 'ADD_PERM'));
  const ping = await udp(rpcCall({ xid: 3002, proc: 0 }), '127.0.0.2');
  assert.deepEqual(ping, { xid: 3002, status: 'accepted', acceptStat: 0, length: 24 });
  // and the second allowed caller may add
  assert.equal((await udp(rpcCall({ xid: 3003, args: v1Arg('192.0.2.31') }), '127.0.0.3'))?.result, AddStat.ADD_SUCCESS);
});

test('addresses the store will not grant: never_authorize → ADD_PERM, mynetworks → ADD_SUCCESS without a grant', async () => {
  const r1 = await udp(rpcCall({ xid: 3101, args: v1Arg('224.0.0.5') }));
  assert.equal(r1?.result, AddStat.ADD_PERM);
  assert.ok(lines.some((l) => l.event === 'drac_refused' && l.client_ip === '224.0.0.5' && l.reason === 'never_authorize'));
  const r2 = await udp(rpcCall({ xid: 3102, args: v1Arg('198.51.100.7') }));
  assert.equal(r2?.result, AddStat.ADD_SUCCESS);
  assert.equal(await tm.map.lookup('198.51.100.7'), undefined);
});

test('hostile frames over UDP get the RPC-standard error reply (or none) and the server keeps serving', async () => {
  const cases: Array<[string, Buffer, Partial<ReturnType<typeof decodeReply>> | undefined]> = [
    ['wrong program → PROG_UNAVAIL', rpcCall({ xid: 4001, prog: 100003 }), { status: 'accepted', acceptStat: 1 }],
    ['version 3 → PROG_MISMATCH 1..2', rpcCall({ xid: 4002, vers: 3 }), { status: 'accepted', acceptStat: 2, low: 1, high: 2 }],
    ['procedure 2 → PROC_UNAVAIL', rpcCall({ xid: 4003, proc: 2 }), { status: 'accepted', acceptStat: 3 }],
    ['v1 ADD without its argument → GARBAGE_ARGS', rpcCall({ xid: 4004 }), { status: 'accepted', acceptStat: 4 }],
    ['v2 ADD with 15 ints → GARBAGE_ARGS', rpcCall({ xid: 4005, vers: 2, args: words(...new Array<number>(15).fill(1)) }), { status: 'accepted', acceptStat: 4 }],
    ['v2 ADD with an int out of byte range → GARBAGE_ARGS', rpcCall({ xid: 4006, vers: 2, args: words(...new Array<number>(15).fill(1), 256) }), { status: 'accepted', acceptStat: 4 }],
    ['RPC version 3 → RPC_MISMATCH', rpcCall({ xid: 4007, rpcvers: 3 }), { status: 'denied', rejectStat: 0, low: 2, high: 2 }],
    ['RPCSEC_GSS credential → AUTH_REJECTEDCRED', rpcCall({ xid: 4008, credFlavor: 6, cred: Buffer.alloc(8) }), { status: 'denied', rejectStat: 1, authStat: 2 }],
    ['credential of 404 bytes → AUTH_BADCRED', rpcCall({ xid: 4009, cred: Buffer.alloc(404) }), { status: 'denied', rejectStat: 1, authStat: 1 }],
    ['short (6 bytes) → dropped', Buffer.alloc(6, 0xff), undefined],
    ['a reply message → dropped', words(4010, 1, 0, 0, 0, 0, 0), undefined],
    ['truncated header → dropped', rpcCall({ xid: 4011 }).subarray(0, 30), undefined],
    ['oversized (5000 bytes) → dropped', Buffer.concat([rpcCall({ xid: 4012, args: v1Arg('192.0.2.50') }), Buffer.alloc(5000 - 44)]), undefined],
    ['RPC_MISMATCH in a 12-byte datagram → no reply (it would be larger than the datagram)', words(4013, 0, 3), undefined],
  ];
  for (const [name, msg, want] of cases) {
    const got = await udpExchange(udpPort, msg, { timeoutMs: want === undefined ? 300 : 1000 });
    if (want === undefined) {
      assert.equal(got, undefined, name);
      continue;
    }
    assert.ok(got, `${name}: no reply`);
    const r = decodeReply(got);
    assert.equal(r.xid, msg.readUInt32BE(0), name);
    for (const [k, v] of Object.entries(want)) assert.equal(r[k as keyof typeof r], v, `${name}: ${k}`);
    assert.ok(got.length <= msg.length, `${name}: reply (${got.length}) larger than the call (${msg.length})`);
  }
  assert.equal(await tm.map.lookup('192.0.2.50'), undefined, 'the oversized datagram recorded nothing');
  assert.ok(lines.some((l) => l.event === 'drac_rpc_error' && /PROG_MISMATCH/.test(String(l.error))));
  assert.ok(lines.some((l) => l.event === 'drac_dropped' && /oversized/.test(String(l.reason))));
  const after = await udp(rpcCall({ xid: 4099, args: v1Arg('192.0.2.51') }));
  assert.equal(after?.result, AddStat.ADD_SUCCESS, 'still serving');
});

test('TCP: a record split into fragments and across writes, pipelined calls answered in order, one connection', async () => {
  const peer = await TcpPeer.open(tcpPort);
  const a = rpcCall({ xid: 5001, args: v1Arg('192.0.2.60') });
  const b = rpcCall({ xid: 5002, vers: 2, args: v2Arg(v6Bytes('2001:0db8:0000:0000:0000:0000:0000:0060')) });
  const c = rpcCall({ xid: 5003, proc: 0 });
  const stream = Buffer.concat([
    recordMark(5, false),
    a.subarray(0, 5),
    recordMark(0, false),
    recordMark(a.length - 5, true),
    a.subarray(5),
    recordMark(b.length, true),
    b,
    recordMark(c.length, true),
    c,
  ]);
  // dribble it in 7-byte writes
  for (let i = 0; i < stream.length; i += 7) {
    peer.write(stream.subarray(i, i + 7));
    await new Promise((r) => setTimeout(r, 2));
  }
  const got = await peer.until((buf) => buf.length >= 32 + 32 + 28);
  peer.close();
  const replies: number[] = [];
  let off = 0;
  while (off + 4 <= got.length) {
    const len = got.readUInt32BE(off) & 0x7fffffff;
    replies.push(decodeReply(got.subarray(off + 4, off + 4 + len)).xid);
    off += 4 + len;
  }
  assert.deepEqual(replies, [5001, 5002, 5003]);
  assert.ok(await tm.map.lookup('192.0.2.60'));
  assert.ok(await tm.map.lookup('2001:db8::60'));
});

test('TCP: a record mark announcing 2 GB closes that connection at once; an error reply comes over TCP too', async () => {
  const bad = await TcpPeer.open(tcpPort);
  bad.write(Buffer.concat([recordMark(0x7ffffff0, true), Buffer.alloc(100)]));
  assert.equal(await bad.waitClosed(2000), true, 'closed');
  assert.equal(bad.received.length, 0);
  assert.ok(lines.some((l) => l.event === 'drac_tcp_closed' && l.reason === 'bad_record'));
  const many = await TcpPeer.open(tcpPort);
  many.write(Buffer.concat(Array.from({ length: 65 }, () => recordMark(0, false))));
  assert.equal(await many.waitClosed(2000), true, '65 empty fragments close it');
  const ok = await TcpPeer.open(tcpPort);
  const call = rpcCall({ xid: 6001, prog: 100005 });
  ok.write(Buffer.concat([recordMark(call.length, true), call]));
  const got = await ok.until((b) => b.length >= 28);
  ok.close();
  assert.equal(decodeReply(got.subarray(4)).acceptStat, 1, 'PROG_UNAVAIL');
});

test('a flood from one caller is cut by the rate limit (logged once a second, not per datagram); others are still served', async () => {
  const flood = createSocket('udp4');
  await new Promise<void>((r) => flood.bind({ address: '127.0.0.4', port: 0 }, () => r()));
  let answered = 0;
  flood.on('message', () => answered++);
  const msg = rpcCall({ xid: 7000, proc: 0 });
  const N = 1500;
  for (let i = 0; i < N; i++) {
    flood.send(msg, udpPort, '127.0.0.1');
    if (i % 100 === 99) await new Promise((r) => setImmediate(r));
  }
  await new Promise((r) => setTimeout(r, 300));
  flood.close();
  assert.ok(answered >= 150 && answered <= 400, `burst of about 200 then the rate: answered ${answered} of ${N}`);
  const limited = lines.filter((l) => l.event === 'drac_rate_limited' && l.caller_ip === '127.0.0.4');
  assert.ok(limited.length >= 1 && limited.length <= 3, `rate-limit lines: ${limited.length}`);
  assert.ok(Number(limited[0]!.dropped) >= 1);
  // the kernel may drop part of the burst before the server reads it; what it read beyond the budget was dropped
  assert.ok(server.counters.rateLimited >= 100, `rate-limited: ${server.counters.rateLimited}`);
  const other = await udp(rpcCall({ xid: 7001, args: v1Arg('192.0.2.70') }), '127.0.0.3');
  assert.equal(other?.result, AddStat.ADD_SUCCESS, 'another caller is unaffected');
});

test('dracd.allow: mask first, comments, CIDR lines; a swapped pair, a holey mask and host bits are named', async () => {
  const ok = parseDracAllow('# POP servers\n255.255.255.0 192.0.2.0\n255.255.255.255 198.51.100.7   # pop2\n\n2001:db8::/32\n');
  assert.deepEqual(ok, { entries: ['192.0.2.0/24', '198.51.100.7/32', '2001:db8::/32'], problems: [] });
  const set = allowSet(ok.entries, 'test');
  assert.equal(set.contains('192.0.2.77'), true);
  assert.equal(set.contains('192.0.3.1'), false);
  const bad = parseDracAllow('192.0.2.0 255.255.255.0\n255.0.255.0 10.0.0.0\n255.255.255.0 192.0.2.7\nbogus\n1 2 3\n');
  assert.equal(bad.entries.length, 0);
  assert.match(bad.problems[0]!, /^line 1: the netmask comes first in dracd.allow: write "255.255.255.0 192.0.2.0"/);
  assert.match(bad.problems[1]!, /^line 2: "255.0.255.0" is not a netmask/);
  assert.match(bad.problems[2]!, /^line 3: 192.0.2.7 has host bits outside 255.255.255.0; perhaps you meant "255.255.255.0 192.0.2.0"/);
  assert.match(bad.problems[3]!, /^line 4: .*bogus/);
  assert.match(bad.problems[4]!, /^line 5: expected "netmask netaddr"/);
  const file = join(tm.dir, 'dracd.allow');
  await writeFile(file, '255.255.255.252 127.0.0.4\n');
  assert.deepEqual((await readDracAllow(file)).entries, ['127.0.0.4/30']);
  assert.equal(allowSet(undefined, 'none').contains('127.9.9.9'), true, 'no list: loopback only');
  assert.equal(allowSet([], 'none').contains('192.0.2.1'), false);
});

test('a failing access map answers ADD_SYSERR (never ADD_SUCCESS) and logs drac_store_error', async () => {
  const broken = new Proxy(tm.map, {
    get(target, prop, recv) {
      if (prop === 'recordMany') return () => Promise.reject(new Error('injected: MDB_MAP_FULL'));
      return Reflect.get(target, prop, recv) as unknown;
    },
  });
  const cap = captureLogger();
  const s = await startDracServer({ listenUdp: [{ host: '127.0.0.1', port: 0 }], listenTcp: [], allow: new CidrSet(['127.0.0.1/32']), rpcbind: false, rateLimit: 100, map: broken, logger: cap.logger, clock: systemClock });
  try {
    const r = await udpExchange(s.udp[0]!.port, rpcCall({ xid: 8001, args: v1Arg('192.0.2.80') }));
    assert.ok(r);
    assert.equal(decodeReply(r).result, AddStat.ADD_SYSERR);
    assert.ok(cap.lines.some((l) => l.event === 'drac_store_error' && l.result === 'ADD_SYSERR' && l.client_ip === '192.0.2.80'));
    assert.equal(await tm.map.lookup('192.0.2.80'), undefined);
  } finally {
    await s.stop();
  }
});

test('rpcbind "auto" without a portmapper: starts and logs drac_rpcbind_absent; rpcbind = true: RG_ERR_RPCBIND, nothing left listening', async () => {
  // transports that cannot answer: a missing unix socket and a UDP port nobody listens on (ICMP unreachable)
  const closed = createSocket('udp4');
  await new Promise<void>((r) => closed.bind({ address: '127.0.0.1', port: 0 }, () => r()));
  const deadPort = closed.address().port;
  await new Promise<void>((r) => closed.close(() => r()));
  const portmap = { transports: [{ kind: 'local' as const, path: join(tm.dir, 'no-rpcbind.sock') }, { kind: 'udp' as const, host: '127.0.0.1', port: deadPort }], timeoutMs: 500 };
  const cap = captureLogger();
  const auto = await startDracServer({ listenUdp: [{ host: '127.0.0.1', port: 0 }], listenTcp: [], allow: new CidrSet(['127.0.0.1/32']), rpcbind: 'auto', rateLimit: 100, map: tm.map, logger: cap.logger, clock: systemClock, portmap });
  try {
    assert.equal(auto.registeredWith, undefined);
    const absent = cap.lines.find((l) => l.event === 'drac_rpcbind_absent');
    assert.ok(absent, 'drac_rpcbind_absent logged');
    assert.match(absent.msg, /set fixed ports or start rpcbind/);
    assert.equal(decodeReply((await udpExchange(auto.udp[0]!.port, rpcCall({ xid: 9001, proc: 0 })))!).acceptStat, 0, 'serving anyway');
  } finally {
    await auto.stop();
  }
  await assert.rejects(
    startDracServer({ listenUdp: [{ host: '127.0.0.1', port: 0 }], listenTcp: [{ host: '127.0.0.1', port: 0 }], allow: new CidrSet(['127.0.0.1/32']), rpcbind: true, rateLimit: 100, map: tm.map, logger: cap.logger, clock: systemClock, portmap }),
    (err: unknown) => {
      assert.ok(isRelaygateError(err));
      assert.equal(err.code, 'RG_ERR_RPCBIND');
      assert.match(err.message, /no portmapper answered/);
      assert.match(err.details[0]!, /start rpcbind/);
      return true;
    },
  );
  // the refused start closed its listeners: their ports can be bound again
  const last = cap.lines.filter((l) => l.event === 'drac_listening').slice(-2);
  assert.deepEqual(last.map((l) => l.transport), ['udp', 'tcp']);
  const again = createSocket('udp4');
  await new Promise<void>((res, rej) => {
    again.once('error', rej);
    again.bind({ address: '127.0.0.1', port: Number(last[0]!.port), exclusive: true }, () => res());
  });
  await new Promise<void>((r) => again.close(() => r()));
  const srv = createServer();
  await new Promise<void>((res, rej) => {
    srv.once('error', rej);
    srv.listen({ host: '127.0.0.1', port: Number(last[1]!.port) }, () => res());
  });
  await new Promise<void>((r) => srv.close(() => r()));
});
