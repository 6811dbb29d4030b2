// Logging: JSON lines, secrets redacted at the top level and one level down, control characters escaped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/log/logger.ts';
import { clientLabel, angle, printable } from '../../src/log/format.ts';
import { decisionLine } from '../../src/log/decision-line.ts';

function capture(): { stream: Writable; lines: () => Record<string, unknown>[] } {
  let out = '';
  const stream = new Writable({
    write(chunk, _enc, cb) {
      out += String(chunk);
      cb();
    },
  });
  return { stream, lines: () => out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>) };
}

test('passwords, secrets and tokens are redacted', () => {
  const c = capture();
  const log = createLogger({ destination: c.stream, level: 'info' });
  log.info({ password: 'hunter2', auth: { password: 'pw', token: 't0k', user: 'alice' }, secret: 's' }, 'x');
  const [line] = c.lines();
  assert.equal(line!.password, '[redacted]');
  assert.equal(line!.secret, '[redacted]');
  assert.deepEqual(line!.auth, { password: '[redacted]', token: '[redacted]', user: 'alice' });
  assert.equal(line!.level, 'info');
  assert.ok(!JSON.stringify(line).includes('hunter2'));
});

test('client values cannot forge a second log line', () => {
  assert.equal(printable('a\r\nb\x00'), 'a\\x0d\\x0ab\\x00');
  assert.equal(clientLabel('192.0.2.7'), 'unknown[192.0.2.7]');
  assert.equal(clientLabel('192.0.2.7', 'mx.example'), 'mx.example[192.0.2.7]');
  assert.equal(angle(''), '<>');
  assert.equal(angle('a@b\n'), '<a@b\\x0a>');
});

test('decision line: Postfix shape, and every client value escaped when one holds a control character', () => {
  const f = { stage: 'rcpt' as const, clientIp: '192.0.2.7', clientName: '', sender: 'alice@example.com', recipient: 'bob@remote.example', protocol: 'ESMTP', helo: 'client.example' };
  assert.equal(
    decisionLine('permit', f, 'permit_pop_before_smtp user=alice source=dovecot'),
    'NOQUEUE: permit: RCPT from unknown[192.0.2.7]: permit_pop_before_smtp user=alice source=dovecot; from=<alice@example.com> to=<bob@remote.example> proto=ESMTP helo=<client.example>',
  );
  const hostile = { ...f, stage: 'mail' as const, clientName: 'x\ny', sender: 'a\r\nb@x', recipient: undefined, protocol: '', helo: 'h\u0000' };
  const line = decisionLine('reject', hostile, '554 5.7.1 <a\nb>: denied');
  assert.equal(line, `NOQUEUE: reject: MAIL from ${clientLabel('192.0.2.7', 'x\ny')}: ${printable('554 5.7.1 <a\nb>: denied')}; from=${angle('a\r\nb@x')} helo=${angle('h\u0000')}`);
  assert.doesNotMatch(line, /[\x00-\x1f\x7f]/);
});

test('log time: ISO 8601 with milliseconds, formatted once per millisecond', () => {
  const c = capture();
  const log = createLogger({ destination: c.stream, level: 'info' });
  const before = Date.now();
  log.info('a');
  log.info('b');
  const after = Date.now();
  for (const l of c.lines()) {
    const t = Date.parse(String(l['time']));
    assert.match(String(l['time']), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(t >= before && t <= after, `${l['time']} outside ${before}..${after}`);
  }
});
