// The non-trivial logic of the smtp benchmark's peers, so a wrong figure cannot come from a parsing slip:
// the raw sink's end-of-data search across chunk boundaries, the load generator's reply splitting,
// percentiles and message builder, and how the benchmark finds relaygate's port in its log.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RawSinkSession, type SinkStats } from '../../bench/peers/sink.ts';
import { ReplyReader, buildMessage, percentile, replyCode } from '../../bench/peers/smtp-load.ts';
import { listeningPort } from '../../bench/peers/relaygate.ts';

function session(): { s: RawSinkSession; stats: SinkStats } {
  const stats: SinkStats = { messages: 0, connections: 0, bytes: 0 };
  return { s: new RawSinkSession(stats), stats };
}

const TRANSACTION = 'EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n';

test('raw sink: a message ends at CRLF.CRLF wherever the chunks split it', () => {
  const body = 'Subject: x\r\n\r\nline one\r\n..dot-stuffed\r\nlast\r\n.\r\n';
  const all = Buffer.from(`${TRANSACTION}${body}QUIT\r\n`);
  // every split point, and byte-by-byte
  for (let cut = 1; cut < all.length; cut++) {
    const { s, stats } = session();
    const out = s.push(all.subarray(0, cut)) + s.push(all.subarray(cut));
    assert.equal(stats.messages, 1, `split at ${cut}`);
    assert.match(out, /^250-sink\.bench\r\n[\s\S]*250 2\.1\.0 Ok\r\n250 2\.1\.5 Ok\r\n354 [^\r]*\r\n250 2\.0\.0 Ok: queued as S1\r\n221 2\.0\.0 Bye\r\n$/, `split at ${cut}`);
    assert.equal(s.ended, true);
  }
  const { s, stats } = session();
  let out = '';
  for (const b of all) out += s.push(Buffer.from([b]));
  assert.equal(stats.messages, 1);
  assert.match(out, /queued as S1\r\n221 /);
});

test('raw sink: a CRLF.CRLF look-alike inside a line does not end the message; an empty body does', () => {
  const { s, stats } = session();
  let out = s.push(Buffer.from(`${TRANSACTION}a\r\n.x\r\nb.\r\n\r\n`));
  assert.equal(stats.messages, 0);
  assert.doesNotMatch(out, /queued/);
  out = s.push(Buffer.from('.\r\n'));
  assert.equal(stats.messages, 1);
  assert.match(out, /^250 2\.0\.0 Ok: queued as S1\r\n$/);
  // DATA followed directly by the end line: the DATA line's own CRLF counts
  out = s.push(Buffer.from('MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n.\r\n'));
  assert.equal(stats.messages, 2);
  assert.match(out, /queued as S2\r\n$/);
});

test('raw sink: pipelined messages in one chunk are each answered; an endless line ends the session', () => {
  const { s, stats } = session();
  const one = 'MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhello\r\n.\r\n';
  const out = s.push(Buffer.from(one.repeat(3)));
  assert.equal(stats.messages, 3);
  assert.equal(out.match(/queued as/g)?.length, 3);
  assert.equal(s.push(Buffer.from('NOOP\r\n')), '250 2.0.0 Ok\r\n');
  const long = session();
  long.s.push(Buffer.alloc(5000, 0x41));
  assert.equal(long.s.ended, true);
});

test('ReplyReader: multi-line replies, split chunks, bare LF, several replies per chunk', () => {
  const r = new ReplyReader();
  assert.deepEqual(r.push('220 hi\r\n250-a\r'), ['220 hi']);
  assert.deepEqual(r.push('\n250-b\r\n250 c'), []);
  assert.deepEqual(r.push('\r\n354 go\n250 done\r\n'), ['250-a\n250-b\n250 c', '354 go', '250 done']);
  assert.deepEqual(r.push('2'), []);
  assert.deepEqual(r.push('50\r\n'), ['250']);
  assert.equal(replyCode('250-a\n250 b'), 250);
  assert.equal(replyCode('garbage'), 0);
  assert.throws(() => new ReplyReader().push('x'.repeat(70_000)), /longer than/);
});

test('percentile: nearest rank', () => {
  const s = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(s, 50), 50);
  assert.equal(percentile(s, 99), 99);
  assert.equal(percentile(s, 100), 100);
  assert.equal(percentile([7], 99), 7);
  assert.ok(Number.isNaN(percentile([], 50)));
});

test('buildMessage: ~N bytes, CRLF only, no dot-leading line, ends with the end-of-data line', () => {
  const m = buildMessage('a@local.example', 'b@remote.example', 1024).toString('latin1');
  assert.ok(m.length > 900 && m.length <= 1024 + 3, `length ${m.length}`);
  assert.ok(m.endsWith('\r\n.\r\n'));
  const lines = m.slice(0, -3).split('\r\n');
  assert.equal(lines.pop(), '');
  for (const l of lines) {
    assert.ok(!l.includes('\n') && !l.includes('\r'), 'bare CR/LF');
    assert.ok(!l.startsWith('.'), 'dot-leading line');
  }
});

test('listeningPort: only once both smtp_listening and start are logged', () => {
  const listening = JSON.stringify({ level: 'info', event: 'smtp_listening', listeners: [{ role: 'smtp', address: '127.0.0.1', port: 40123 }] });
  const start = JSON.stringify({ level: 'info', event: 'start' });
  assert.equal(listeningPort(`${listening}\n`), undefined);
  assert.equal(listeningPort(`garbage\n{not json\n${listening}\n${start}\n`), 40123);
  assert.equal(listeningPort(`${start}\n`), undefined);
});
