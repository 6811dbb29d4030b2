// The ONC RPC layer (src/feeds/rpc.ts) and XDR (src/feeds/xdr.ts) on hand-built messages: every kind of
// header the server must answer or drop, the reply encodings, and record marking (fragments split at
// every byte, bounds on size and fragment count, a bad mark).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCall, successReply, progMismatchReply, RecordReader, frameRecord, authErrorReply, rpcMismatchReply, AuthStat, parseReply } from '../../src/feeds/rpc.ts';
import { XdrReader, XdrError } from '../../src/feeds/xdr.ts';
import { rpcCall, words, opaque, recordMark, decodeReply, v1Arg } from './helpers.ts';

test('a DRAC v1 ADD call decodes: xid, program, version, procedure, the 4-byte argument; a UDP call is 44 bytes', () => {
  const msg = rpcCall({ xid: 77, args: v1Arg('192.0.2.10') });
  assert.equal(msg.length, 44);
  const p = parseCall(msg);
  assert.equal(p.kind, 'call');
  if (p.kind !== 'call') return;
  assert.deepEqual({ xid: p.call.xid, prog: p.call.prog, vers: p.call.vers, proc: p.call.proc }, { xid: 77, prog: 900101, vers: 1, proc: 1 });
  assert.equal(p.call.args.toString('hex'), 'c000020a');
});

test('dropped, never answered: short messages, replies, unknown message types, truncated headers and credentials', () => {
  const cases: Array<[string, Buffer]> = [
    ['empty', Buffer.alloc(0)],
    ['7 bytes', Buffer.alloc(7)],
    ['a reply', words(1, 1, 0, 0, 0, 0)],
    ['message type 7', words(1, 7, 2, 900101, 1, 1)],
    ['header cut after proc', rpcCall().subarray(0, 24)],
    ['credential shorter than its length', Buffer.concat([words(1, 0, 2, 900101, 1, 1, 0, 8), Buffer.alloc(4)])],
    ['verifier missing', Buffer.concat([words(1, 0, 2, 900101, 1, 1, 0, 0)])],
  ];
  for (const [name, msg] of cases) assert.equal(parseCall(msg).kind, 'drop', name);
});

test('RPC version 3 → MSG_DENIED / RPC_MISMATCH with low = high = 2', () => {
  const p = parseCall(rpcCall({ xid: 5, rpcvers: 3 }));
  assert.equal(p.kind, 'deny');
  if (p.kind !== 'deny') return;
  assert.deepEqual(decodeReply(p.reply), { xid: 5, status: 'denied', rejectStat: 0, low: 2, high: 2, length: 24 });
});

test('credentials: AUTH_NONE and a well-formed AUTH_SYS pass; oversized, malformed or unknown ones are AUTH_ERRORs', () => {
  const authSys = Buffer.concat([words(123), opaque(Buffer.from('pop1')), words(0, 0, 2, 10, 20)]);
  assert.equal(parseCall(rpcCall({ credFlavor: 1, cred: authSys, args: v1Arg('192.0.2.1') })).kind, 'call');
  const deny = (spec: Parameters<typeof rpcCall>[0]) => {
    const p = parseCall(rpcCall(spec));
    assert.equal(p.kind, 'deny');
    return decodeReply((p as { reply: Buffer }).reply);
  };
  assert.equal(deny({ cred: Buffer.alloc(404) }).authStat, AuthStat.AUTH_BADCRED);
  assert.equal(deny({ verf: Buffer.alloc(404) }).authStat, AuthStat.AUTH_BADVERF);
  assert.equal(deny({ credFlavor: 1, cred: Buffer.alloc(3) }).authStat, AuthStat.AUTH_BADCRED);
  assert.equal(deny({ credFlavor: 1, cred: Buffer.concat([words(1), opaque(Buffer.alloc(0)), words(0, 0, 17)]) }).authStat, AuthStat.AUTH_BADCRED, '17 gids > 16');
  assert.equal(deny({ credFlavor: 6 /* RPCSEC_GSS */, cred: Buffer.alloc(8) }).authStat, AuthStat.AUTH_REJECTEDCRED);
});

test('reply encodings: SUCCESS with results, PROG_MISMATCH with low/high, AUTH_ERROR, RPC_MISMATCH', () => {
  assert.equal(successReply(9, Buffer.from([0, 0, 0, 1])).toString('hex'), '00000009' + '00000001' + '00000000' + '0000000000000000' + '00000000' + '00000001');
  assert.deepEqual(decodeReply(progMismatchReply(9, 1, 2)), { xid: 9, status: 'accepted', acceptStat: 2, low: 1, high: 2, length: 32 });
  assert.deepEqual(decodeReply(authErrorReply(9, AuthStat.AUTH_TOOWEAK)), { xid: 9, status: 'denied', rejectStat: 1, authStat: 5, length: 20 });
  assert.equal(rpcMismatchReply(9).length, 24);
  const parsed = parseReply(successReply(9, Buffer.from([0, 0, 0, 1])));
  assert.equal(parsed.kind, 'success');
  assert.equal(parseReply(progMismatchReply(3, 1, 2)).kind, 'error');
});

test('record marking: a record in three fragments, fed one byte at a time, comes out whole and once', () => {
  const msg = rpcCall({ xid: 42, args: v1Arg('192.0.2.44') });
  const stream = Buffer.concat([recordMark(10, false), msg.subarray(0, 10), recordMark(0, false), recordMark(msg.length - 10, true), msg.subarray(10), frameRecord(Buffer.from('abcd'))]);
  const r = new RecordReader({ maxRecord: 4096, maxFragments: 8 });
  const out: Buffer[] = [];
  for (let i = 0; i < stream.length; i++) {
    const got = r.push(stream.subarray(i, i + 1));
    assert.ok(Array.isArray(got));
    out.push(...(got as Buffer[]));
  }
  assert.equal(out.length, 2);
  assert.ok(out[0]!.equals(msg));
  assert.equal(out[1]!.toString(), 'abcd');
  assert.equal(r.partialBytes, 0);
});

test('record marking: an announced size over the bound, too many fragments, and the stream stays failed', () => {
  const big = new RecordReader({ maxRecord: 4096, maxFragments: 8 });
  const e1 = big.push(recordMark(0x7fffffff, true));
  assert.equal(typeof e1, 'string');
  assert.match(e1 as string, /more than the 4096 allowed/);
  assert.equal(big.push(frameRecord(Buffer.from('ok'))), e1, 'no resync after a bad mark');

  // two fragments of 3000 bytes: each fits, the record does not
  const sum = new RecordReader({ maxRecord: 4096, maxFragments: 8 });
  assert.deepEqual(sum.push(Buffer.concat([recordMark(3000, false), Buffer.alloc(3000)])), []);
  assert.match(sum.push(recordMark(3000, true)) as string, /more than the 4096 allowed/);

  const frags = new RecordReader({ maxRecord: 4096, maxFragments: 8 });
  const zeros = Buffer.concat(Array.from({ length: 9 }, () => recordMark(0, false)));
  assert.match(frags.push(zeros) as string, /more than 8 fragments/);
});

test('XDR reader: bounds on every read, opaque limits, padding', () => {
  const r = new XdrReader(Buffer.concat([words(5), Buffer.from('hello'), Buffer.alloc(3), words(7)]));
  assert.equal(r.string(10), 'hello');
  assert.equal(r.uint(), 7);
  assert.throws(() => r.uint(), XdrError);
  assert.throws(() => new XdrReader(words(500)).opaque(400), /exceeds 400/);
  assert.throws(() => new XdrReader(words(8, 1)).opaque(400), XdrError, 'shorter than announced');
  assert.equal(new XdrReader(words(0xfffffffe)).int(), -2);
});
