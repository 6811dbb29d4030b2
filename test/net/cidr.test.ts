// CIDR parsing and CidrSet membership: Postfix mynetworks syntax, mapped addresses, junk never matches.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CidrSet, cidrContains, normalizeIp, parseCidr } from '../../src/net/index.ts';
import { RelaygateError } from '../../src/errors.ts';

const PARSE_OK: ReadonlyArray<readonly [input: string, text: string, family: 4 | 6]> = [
  ['192.0.2.0/24', '192.0.2.0/24', 4],
  ['192.0.2.7', '192.0.2.7/32', 4],
  ['0.0.0.0/0', '0.0.0.0/0', 4],
  ['10.0.0.0/8', '10.0.0.0/8', 4],
  [' 10.0.0.0/8 ', '10.0.0.0/8', 4],
  ['[192.0.2.7]', '192.0.2.7/32', 4],
  ['2001:db8::/32', '2001:db8::/32', 6],
  ['2001:DB8:0:0::/64', '2001:db8::/64', 6],
  ['[2001:db8::]/32', '2001:db8::/32', 6],
  ['[::1]/128', '::1/128', 6],
  ['[::1]', '::1/128', 6],
  ['::/0', '::/0', 6],
  ['::ffff:10.0.0.0/104', '10.0.0.0/8', 4],
  ['::ffff:192.0.2.7/128', '192.0.2.7/32', 4],
  ['[::ffff:0:0]/96', '0.0.0.0/0', 4],
  ['::ffff:0:0:0/96', '::ffff:0:0:0/96', 6], // IPv4-translated, not mapped
];

for (const [input, text, family] of PARSE_OK) {
  test(`parseCidr(${JSON.stringify(input)}) → ${text}`, () => {
    const c = parseCidr(input);
    assert.equal(c.text, text);
    assert.equal(c.family, family);
  });
}

const PARSE_BAD: ReadonlyArray<readonly [input: string, message: RegExp]> = [
  ['', /empty/],
  ['   ', /empty/],
  ['192.0.2.7/24', /"192\.0\.2\.7\/24": host bits are set; perhaps you meant 192\.0\.2\.0\/24/],
  ['10.1.2.3/16', /perhaps you meant 10\.1\.0\.0\/16/],
  ['2001:db8::1/32', /host bits are set; perhaps you meant 2001:db8::\/32/],
  ['::ffff:10.0.0.1/104', /"::ffff:10\.0\.0\.1\/104": host bits are set; perhaps you meant ::ffff:10\.0\.0\.0\/104/],
  ['192.0.2.0/33', /prefix length must be 0\.\.32/],
  ['2001:db8::/129', /prefix length must be 0\.\.128/],
  ['192.0.2.0/', /prefix length must be a number/],
  ['192.0.2.0/x', /prefix length must be a number/],
  ['192.0.2.0/-1', /prefix length must be a number/],
  ['mail.example.com', /literal IPv4 or IPv6/],
  ['unknown', /literal IPv4 or IPv6/],
  ['010.0.0.0/8', /literal IPv4 or IPv6/],
  ['fe80::%eth0/64', /zone ids are not allowed/],
  ['[fe80::1%eth0]/64', /zone ids are not allowed/],
  ['[::1/128]', /literal IPv4 or IPv6/],
  ['[::1', /literal IPv4 or IPv6/],
  ['hash:/etc/postfix/network_table', /literal IPv4 or IPv6/],
];

for (const [input, message] of PARSE_BAD) {
  test(`parseCidr(${JSON.stringify(input)}) is refused: ${message}`, () => {
    assert.throws(() => parseCidr(input), (e: unknown) => e instanceof RelaygateError && e.code === 'RG_ERR_BAD_ADDRESS' && message.test(e.message));
  });
}

const SET = new CidrSet(['127.0.0.0/8', '192.0.2.0/24', '::ffff:10.0.0.0/104', '[::1]/128', '2001:db8::/32', '198.51.100.7']);

const MEMBERSHIP: ReadonlyArray<readonly [ip: string, match: string | undefined]> = [
  ['127.0.0.1', '127.0.0.0/8'],
  ['192.0.2.255', '192.0.2.0/24'],
  ['192.0.3.0', undefined],
  ['10.200.3.4', '10.0.0.0/8'], // from the mapped spelling
  ['11.0.0.1', undefined],
  ['198.51.100.7', '198.51.100.7/32'],
  ['198.51.100.8', undefined],
  ['::1', '::1/128'],
  ['::2', undefined],
  ['2001:db8:ffff::1', '2001:db8::/32'],
  ['2001:db9::1', undefined],
  // IPv4 rules match IPv4-mapped clients, normalized or (defence in depth) not
  ['::ffff:192.0.2.9', '192.0.2.0/24'],
  ['::FFFF:7f00:1', '127.0.0.0/8'],
  ['::ffff:0:c000:209', undefined], // IPv4-translated is not mapped
  // junk never matches, and never throws
  ['', undefined],
  ['unknown', undefined],
  ['localhost', undefined],
  ['foo:bar', undefined],
  ['127.0.0.1.5', undefined],
  ['127.0.0', undefined],
  ['127.000.0.1', undefined],
  ['fe80::1%lo', undefined],
  ['[::1]', undefined],
];

for (const [ip, match] of MEMBERSHIP) {
  test(`CidrSet.match(${JSON.stringify(ip)}) → ${match ?? 'none'}`, () => {
    assert.equal(SET.match(ip)?.text, match);
    assert.equal(SET.contains(ip), match !== undefined);
    if (match !== undefined) assert.ok(cidrContains(parseCidr(match), ip));
  });
}

test('junk never matches even a set that covers everything (0.0.0.0/0 and ::/0)', () => {
  const all = new CidrSet(['0.0.0.0/0', '::/0']);
  for (const junk of ['unknown', '', 'x', '1.2.3', 'a:b:c', '0.0.0.0.0', 'hostname.example']) {
    assert.equal(all.contains(junk), false, junk);
    assert.equal(cidrContains(parseCidr('0.0.0.0/0'), junk), false, junk);
  }
  assert.equal(new CidrSet(['0.0.0.0/8']).contains('unknown'), false, 'junk used to parse as 0.0.0.0');
});

test('::ffff:10.0.0.0/104 and 10.0.0.0/8 are the same network', () => {
  const a = new CidrSet(['::ffff:10.0.0.0/104']);
  const b = new CidrSet(['10.0.0.0/8']);
  for (const ip of ['10.0.0.0', '10.255.255.255', '9.255.255.255', '11.0.0.0', '::ffff:10.1.1.1']) {
    assert.equal(a.contains(ip), b.contains(ip), ip);
  }
  assert.deepEqual(parseCidr('::ffff:10.0.0.0/104'), parseCidr('10.0.0.0/8'));
});

test('every client normalizeIp accepts is matched the same whatever spelling it came in', () => {
  for (const spelling of ['192.0.2.1', '::ffff:192.0.2.1', '::FFFF:C000:201', '0:0:0:0:0:ffff:c000:201']) {
    assert.equal(SET.contains(normalizeIp(spelling)!), true, spelling);
  }
  for (const spelling of ['2001:DB8::1', '2001:0db8:0:0:0:0:0:1']) assert.equal(SET.contains(normalizeIp(spelling)!), true, spelling);
});

test('CidrSet lists every bad entry at once (RG_ERR_BAD_ADDRESS with one detail each)', () => {
  assert.throws(
    () => new CidrSet(['10.0.0.0/8', '10.1.2.3/16', 'mail.example.com', '[::1]/128', 'fe80::1%eth0'], 'mynetworks'),
    (e: unknown) => {
      assert.ok(e instanceof RelaygateError);
      assert.equal(e.code, 'RG_ERR_BAD_ADDRESS');
      assert.match(e.message, /^mynetworks: 3 invalid entries$/);
      assert.equal(e.details.length, 3);
      assert.match(e.details[0]!, /10\.1\.2\.3\/16/);
      assert.match(e.details[1]!, /mail\.example\.com/);
      assert.match(e.details[2]!, /zone/);
      return true;
    },
  );
});

test('an empty set matches nothing; size and blocks report the configuration', () => {
  const empty = new CidrSet([]);
  assert.equal(empty.size, 0);
  assert.equal(empty.contains('127.0.0.1'), false);
  assert.equal(SET.size, 6);
  assert.deepEqual(
    SET.blocks.map((b) => b.text),
    ['127.0.0.0/8', '192.0.2.0/24', '10.0.0.0/8', '::1/128', '2001:db8::/32', '198.51.100.7/32'],
  );
});
