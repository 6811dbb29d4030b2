// The one envelope-address parser: table-driven.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAddress } from '../../src/engine/address.ts';
import { partialAddressKeys, senderAccessKeys } from '../../src/engine/access.ts';

type Expect = Partial<ReturnType<typeof parseAddress>>;

const CASES: ReadonlyArray<readonly [input: string, expect: Expect]> = [
  ['alice@example.com', { local: 'alice', domain: 'example.com', hasDomain: true, routed: false, literal: false, valid: true, isNull: false }],
  ['Alice@EXAMPLE.Com.', { local: 'Alice', domain: 'example.com', valid: true }],
  ['<alice@example.com>', { raw: 'alice@example.com', domain: 'example.com' }],
  ['', { isNull: true, valid: true }],
  ['<>', { isNull: true }],
  ['postmaster', { local: 'postmaster', domain: '', hasDomain: false, valid: true }],
  ['bob@[192.0.2.1]', { domain: '[192.0.2.1]', literal: true, valid: true }],
  ['bob@[IPv6:2001:db8::1]', { domain: '[ipv6:2001:db8::1]', literal: true }],
  ['bob%remote.example@example.com', { local: 'bob%remote.example', routed: true }],
  ['remote!bob@example.com', { routed: true }],
  ['"bob@remote"@example.com', { local: 'bob@remote', localRaw: '"bob@remote"', domain: 'example.com', routed: true, valid: true }],
  ['"bob smith"@example.com', { local: 'bob smith', routed: false, valid: true }],
  ['"a\\"b"@example.com', { local: 'a"b', routed: false, valid: true }],
  ['"a\\@b"@example.com', { local: 'a@b', routed: true }],
  ['@hop.example:bob@example.com', { routed: true, domain: 'example.com' }],
  ['a@b@example.com', { local: 'a@b', routed: true, domain: 'example.com' }],
  ['"unterminated@example.com', { valid: false }],
  ['@example.com', { valid: false }],
  ['bob@', { valid: false, hasDomain: true }],
  ['bob@exa mple.com', { valid: false }],
  ['bob\n@example.com', { valid: false }],
  ['bob@example.com\r', { valid: false }],
];

for (const [input, expect] of CASES) {
  test(`parseAddress(${JSON.stringify(input)})`, () => {
    const a = parseAddress(input);
    for (const [k, v] of Object.entries(expect)) assert.equal(a[k as keyof typeof a], v, `${k}`);
  });
}

test('partial address keys follow Postfix split_at_right', () => {
  assert.deepEqual(partialAddressKeys('192.0.2.9'), ['192.0.2', '192.0', '192']);
  assert.deepEqual(partialAddressKeys('2001:db8:1:2::5'), ['2001:db8:1:2:', '2001:db8:1:2', '2001:db8:1', '2001:db8', '2001']);
  assert.deepEqual(partialAddressKeys('::1'), [':']);
});

test('sender access keys: user@domain, domain, parent domains, user@; <> for the null sender', () => {
  assert.deepEqual(senderAccessKeys(parseAddress('bob@mail.Example.com'), true), ['bob@mail.example.com', 'mail.example.com', 'example.com', 'com', 'bob@']);
  assert.deepEqual(senderAccessKeys(parseAddress('bob@mail.example.com'), false), ['bob@mail.example.com']);
  assert.deepEqual(senderAccessKeys(parseAddress(''), true), ['<>']);
  assert.deepEqual(senderAccessKeys(parseAddress('postmaster'), true), ['postmaster', 'postmaster@']);
  assert.deepEqual(senderAccessKeys(parseAddress('bob@[192.0.2.1]'), true), ['bob@[192.0.2.1]', '[192.0.2.1]', 'bob@']);
});
