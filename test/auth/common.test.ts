// Shared backend helpers: endpoint parsing (a start-up error when wrong), deadlines, credential checks.
//
// Debian packages: none.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { credentialProblem, parseEndpoint, withDeadline } from '../../src/auth/common.ts';
import { ok } from '../../src/auth/types.ts';
import { RelaygateError } from '../../src/errors.ts';

test('parseEndpoint accepts absolute socket paths, IPv4:port and [IPv6]:port', () => {
  assert.deepEqual(parseEndpoint('/run/dovecot/auth-client', 'x', true), { kind: 'unix', path: '/run/dovecot/auth-client' });
  assert.deepEqual(parseEndpoint('127.0.0.1:12345', 'x', true), { kind: 'tcp', host: '127.0.0.1', port: 12345 });
  assert.deepEqual(parseEndpoint('[::1]:993', 'x', true), { kind: 'tcp', host: '::1', port: 993 });
});

test('parseEndpoint refuses relative paths, host names, bad ports and TCP where only unix works', () => {
  for (const [text, tcp] of [
    ['auth-client', true],
    ['localhost:12345', true],
    ['127.0.0.1:0', true],
    ['127.0.0.1:70000', true],
    ['127.0.0.1', true],
    ['::1:25', true],
    ['', true],
    ['127.0.0.1:12345', false],
    ['/' + 'x'.repeat(200), true],
  ] as const) {
    assert.throws(() => parseEndpoint(text, 'dovecot', tcp), (e: unknown) => e instanceof RelaygateError && e.code === 'RG_ERR_AUTH_BACKEND', text);
  }
});

test('withDeadline: a result passes, a throw, a rejection or the deadline become tempfail', async () => {
  assert.deepEqual(await withDeadline(async () => ok('a'), 1000, 't'), ok('a'));
  assert.equal((await withDeadline(() => { throw new Error('boom'); }, 1000, 't')).outcome, 'tempfail');
  assert.equal((await withDeadline(() => Promise.reject(new Error('boom')), 1000, 't')).outcome, 'tempfail');
  const late = await withDeadline(() => new Promise((r) => setTimeout(() => r(ok('late')), 300)), 50, 't');
  assert.deepEqual(late, { outcome: 'tempfail', reason: 't timed out after 50 ms' });
});

test('credentialProblem refuses empty or control-character usernames, NUL in passwords, oversized input', () => {
  assert.equal(credentialProblem('alice', 'pw'), undefined);
  assert.equal(credentialProblem('alice@example.org', 'pw with spaces and ünï'), undefined);
  for (const [u, p] of [['', 'x'], ['a\nb', 'x'], ['a\0b', 'x'], ['a\tb', 'x'], ['alice', 'p\0w'], ['a'.repeat(2000), 'x'], ['alice', 'x'.repeat(2000)]] as const) {
    assert.ok(credentialProblem(u, p), JSON.stringify([u, p]));
  }
});
