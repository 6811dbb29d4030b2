// Dovecot password schemes, verified against hashes the real tools make at test time.
//
// Debian packages: dovecot-core (doveadm pw), whois (mkpasswd), apache2-utils (htpasswd).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { CryptPool } from '../../src/auth/crypt-pool.ts';
import {
  cramMd5Capable,
  parseStoredPassword,
  safeEqual,
  SUPPORTED_SCHEMES,
  verifyCramMd5,
  verifyPassword,
  type StoredPassword,
} from '../../src/auth/password-schemes.ts';
import { doveadmPw, htpasswdBcrypt, mkpasswd } from './tools.ts';

const pool = new CryptPool();
after(() => pool.close());

// non-ASCII and a space on purpose: every tool and verifier must agree on UTF-8 bytes
const PW = 'Sekret pw ünï';
const WRONG = ['sekret pw ünï', 'Sekret pw uni', 'Sekret pw ünï ', '', 'x'];

function parsed(field: string): StoredPassword {
  const r = parseStoredPassword(field);
  assert.ok(r.ok, `${field}: ${r.ok ? '' : r.problem}`);
  return r.stored;
}

async function assertVerifies(field: string, password = PW): Promise<void> {
  const s = parsed(field);
  assert.equal(await verifyPassword(s, password, pool, 30_000), true, `${field} should verify`);
  for (const w of WRONG) assert.equal(await verifyPassword(s, w, pool, 30_000), false, `${field} must not verify ${JSON.stringify(w)}`);
}

const DOVEADM_SCHEMES = [
  'PLAIN',
  'SHA512-CRYPT',
  'SHA256-CRYPT',
  'BLF-CRYPT',
  'ARGON2ID',
  'ARGON2I',
  'SSHA512',
  'SSHA256',
  'SSHA',
  'CRAM-MD5',
  'MD5-CRYPT',
  'SHA',
  'SHA256',
  'SHA512',
  'SMD5',
  'PLAIN-MD5',
  'LDAP-MD5',
  'SSHA256.HEX',
  'SSHA.B64',
  'PLAIN.B64',
  'SHA256.HEX',
];

for (const scheme of DOVEADM_SCHEMES) {
  test(`doveadm pw -s ${scheme}: right password verifies, wrong ones do not`, async () => {
    await assertVerifies(await doveadmPw(scheme, PW));
  });
}

test('doveadm pw -s SHA512-CRYPT -r 20000 (explicit rounds=)', async () => {
  const h = await doveadmPw('SHA512-CRYPT', PW, 20000);
  assert.match(h, /\$6\$rounds=20000\$/);
  await assertVerifies(h);
});

test('doveadm pw -s BLF-CRYPT gives $2y$; the same hash as $2b$ and $2a$ verifies too', async () => {
  const h = await doveadmPw('BLF-CRYPT', PW);
  assert.match(h, /^\{BLF-CRYPT\}\$2y\$/);
  const bare = h.slice('{BLF-CRYPT}'.length);
  for (const v of ['$2y$', '$2b$', '$2a$']) await assertVerifies(`{BLF-CRYPT}${v}${bare.slice(4)}`);
});

for (const [method, prefix] of [
  ['sha-512', '$6$'],
  ['sha256crypt', '$5$'],
  ['md5crypt', '$1$'],
  ['bcrypt', '$2b$'],
  ['bcrypt-a', '$2a$'],
] as const) {
  test(`mkpasswd -m ${method} (${prefix}) as {CRYPT} and without a scheme (passwd-file default CRYPT)`, async () => {
    const h = await mkpasswd(method, PW);
    assert.ok(h.startsWith(prefix), h);
    await assertVerifies(h);
    await assertVerifies(`{CRYPT}${h}`);
  });
}

test('htpasswd -nbB gives $2y$ and verifies as {BLF-CRYPT} and {CRYPT}', async () => {
  const h = await htpasswdBcrypt(PW);
  assert.ok(h.startsWith('$2y$'), h);
  await assertVerifies(`{BLF-CRYPT}${h}`);
  await assertVerifies(h);
});

test('formats relaygate cannot verify are reported, never "any password"', async () => {
  const yescrypt = await mkpasswd('yescrypt', PW);
  const des = await mkpasswd('descrypt', PW);
  for (const [field, re] of [
    [yescrypt, /yescrypt is not supported/],
    [des, /DES crypt is not supported/],
    ['{SCRAM-SHA-256}4096,abc,def', /unknown password scheme/],
    ['{DIGEST-MD5}8b1a9953c4611296a827abf8c47804d7', /unknown password scheme/],
    ['{SHA512-CRYPT}$6$short', /not supported/],
    ['{CRAM-MD5}abcd', /64 hex digits/],
    ['{SSHA}!!!!', /not valid base64/],
    ['{SSHA256}' + Buffer.alloc(32).toString('base64'), /wrong length/],
    ['{ARGON2ID}$argon2id$garbage', /argon2/],
    ['{PLAIN}', /empty password/],
    ['{MD5-CRYPT}$6$abc$' + 'a'.repeat(86), /\$1\$/],
    ['{BLF-CRYPT.HEX}$2y$05$' + 'a'.repeat(53), /no encoding suffix/],
  ] as const) {
    const r = parseStoredPassword(field);
    assert.equal(r.ok, false, field);
    if (!r.ok) {
      assert.match(r.problem, re, field);
      // the problem text names the scheme, never the stored hash
      const data = field.replace(/^\{[^}]*\}/, '');
      if (data.length > 8) assert.ok(!r.problem.includes(data), `problem leaks the hash: ${r.problem}`);
    }
  }
});

test('scheme names are case-insensitive and CLEAR/CLEARTEXT are PLAIN', async () => {
  for (const f of ['{plain}' + PW, '{Clear}' + PW, '{CLEARTEXT}' + PW]) await assertVerifies(f);
  await assertVerifies((await doveadmPw('SSHA512', PW)).replace('{SSHA512}', '{ssha512}'));
  assert.ok(SUPPORTED_SCHEMES.includes('ARGON2ID') && SUPPORTED_SCHEMES.includes('CRAM-MD5'));
});

test('CRAM-MD5: {CRAM-MD5} (doveadm) and {PLAIN} entries check a response digest; hashed entries cannot', async () => {
  const challenge = '<1896.697170952@postoffice.example.net>';
  const good = createHmac('md5', PW).update(challenge).digest('hex');
  const cram = parsed(await doveadmPw('CRAM-MD5', PW));
  const plain = parsed(`{PLAIN}${PW}`);
  for (const s of [cram, plain]) {
    assert.equal(cramMd5Capable(s), true);
    assert.equal(verifyCramMd5(s, challenge, good), true);
    assert.equal(verifyCramMd5(s, challenge, good.toUpperCase()), true);
    assert.equal(verifyCramMd5(s, challenge + 'x', good), false);
    assert.equal(verifyCramMd5(s, challenge, createHmac('md5', 'wrong').update(challenge).digest('hex')), false);
    assert.equal(verifyCramMd5(s, challenge, 'zz'), false);
  }
  const crypt = parsed(await doveadmPw('SHA512-CRYPT', PW));
  assert.equal(cramMd5Capable(crypt), false);
  assert.equal(verifyCramMd5(crypt, challenge, good), false);
});

test('safeEqual compares whole byte strings of any length', () => {
  assert.equal(safeEqual(Buffer.from('abc'), Buffer.from('abc')), true);
  assert.equal(safeEqual(Buffer.from('abc'), Buffer.from('abcd')), false);
  assert.equal(safeEqual(Buffer.from(''), Buffer.from('')), true);
  assert.equal(safeEqual(Buffer.from('abc'), Buffer.from('abd')), false);
});
