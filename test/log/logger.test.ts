// Logging: JSON lines, secrets redacted at the top level and one level down, control characters escaped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/log/logger.ts';
import { clientLabel, angle, printable } from '../../src/log/format.ts';

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
