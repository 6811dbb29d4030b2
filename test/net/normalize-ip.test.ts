// normalizeIp(): the one gate every IP passes. Table-driven: input → canonical form, or undefined (refused).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeIp, requireIp } from '../../src/net/index.ts';
import { RelaygateError } from '../../src/errors.ts';

const CASES: ReadonlyArray<readonly [input: string, expected: string | undefined, why: string]> = [
  // IPv4
  ['192.0.2.7', '192.0.2.7', 'dotted quad as is'],
  ['0.0.0.0', '0.0.0.0', 'all zeros'],
  ['255.255.255.255', '255.255.255.255', 'broadcast'],
  ['010.0.0.1', undefined, 'leading zero (octal to some parsers)'],
  ['192.0.2.07', undefined, 'leading zero in the last octet'],
  ['256.1.1.1', undefined, 'octet out of range'],
  ['1.2.3', undefined, 'short form'],
  ['1.2.3.4.5', undefined, 'five octets'],
  ['0x7f.0.0.1', undefined, 'hex octet'],
  ['2130706433', undefined, 'integer form'],
  // IPv6, RFC 5952
  ['2001:DB8:0:0:1:0:0:1', '2001:db8::1:0:0:1', 'lower case; first of two equal zero runs compressed'],
  ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1', 'a single zero group is never compressed'],
  ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1', 'leading zeros dropped, longest run compressed'],
  ['2001:db8:0:0:1:0:0:0', '2001:db8:0:0:1::', 'the longer run wins'],
  ['2001:db8::0:1', '2001:db8::1', 're-compressed'],
  ['0:0:0:0:0:0:0:0', '::', 'unspecified'],
  ['0:0:0:0:0:0:0:1', '::1', 'loopback'],
  ['fe80:0:0:0:0:0:0:1', 'fe80::1', 'link-local without zone'],
  ['1::', '1::', 'trailing compression'],
  ['::192.0.2.1', '::c000:201', 'IPv4-compatible (deprecated) stays IPv6'],
  // IPv4-mapped spellings → IPv4
  ['::ffff:192.0.2.7', '192.0.2.7', 'mapped, dotted tail'],
  ['::FFFF:192.0.2.7', '192.0.2.7', 'mapped, upper case'],
  ['::ffff:c000:207', '192.0.2.7', 'mapped, hex tail'],
  ['::FFFF:C000:0207', '192.0.2.7', 'mapped, upper-case hex with a leading zero'],
  ['::FFFF:0:1', '0.0.0.1', 'mapped, short hex groups'],
  ['0:0:0:0:0:ffff:c000:207', '192.0.2.7', 'mapped, uncompressed'],
  ['0000:0000:0000:0000:0000:ffff:192.168.100.200', '192.168.100.200', 'mapped, longest legal text (45 chars)'],
  ['::ffff:0:c000:207', '::ffff:0:c000:207', 'IPv4-translated (::ffff:0:0:0/96) is NOT mapped'],
  ['::ffff:010.0.0.1', undefined, 'mapped with an octal-looking tail'],
  // junk
  ['', undefined, 'empty'],
  ['unknown', undefined, 'what Postfix/Dovecot write when there is no address'],
  ['mail.example.com', undefined, 'hostname'],
  ['localhost', undefined, 'hostname'],
  ['fe80::1%eth0', undefined, 'zone id'],
  ['fe80::1%1', undefined, 'numeric zone id'],
  ['[::1]', undefined, 'brackets'],
  ['[192.0.2.1]', undefined, 'brackets'],
  [' 192.0.2.1', undefined, 'leading whitespace'],
  ['192.0.2.1\n', undefined, 'trailing newline'],
  ['192.0.2.0/24', undefined, 'a network is not an address'],
  ['1:2:3:4:5:6:7:8:9', undefined, 'nine groups'],
  ['2001:db8::1::2', undefined, 'two ::'],
  ['2001:db8::g', undefined, 'not hex'],
  [`${'0'.repeat(40)}::1`, undefined, 'over-long'],
];

for (const [input, expected, why] of CASES) {
  test(`normalizeIp(${JSON.stringify(input)}) → ${expected ?? 'refused'} (${why})`, () => {
    assert.equal(normalizeIp(input), expected);
  });
}

test('normalizeIp is idempotent on everything it accepts', () => {
  for (const [input] of CASES) {
    const once = normalizeIp(input);
    if (once !== undefined) assert.equal(normalizeIp(once), once, input);
  }
});

test('normalizeIp refuses non-strings without throwing', () => {
  assert.equal(normalizeIp(undefined as unknown as string), undefined);
  assert.equal(normalizeIp(42 as unknown as string), undefined);
});

test('requireIp: RG_ERR_BAD_ADDRESS naming the input, canonical form otherwise', () => {
  assert.equal(requireIp('::FFFF:192.0.2.7'), '192.0.2.7');
  assert.throws(
    () => requireIp('unknown', 'client IP'),
    (e: unknown) => e instanceof RelaygateError && e.code === 'RG_ERR_BAD_ADDRESS' && /invalid client IP "unknown"/.test(e.message),
  );
  assert.throws(() => requireIp('x'.repeat(100)), /…/);
});
