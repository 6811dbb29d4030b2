// MD5 at block level (Dovecot's {CRAM-MD5} context, md5crypt), checked against node:crypto and the real tools.
//
// Debian packages: dovecot-core (doveadm pw), whois (mkpasswd).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { hmacMd5Context, hmacMd5FromContext, md5Crypt, md5Resume } from '../../src/auth/md5.ts';
import { doveadmPw, mkpasswd } from './tools.ts';

test('md5Resume from the initial state equals MD5 for lengths around every padding boundary', () => {
  const iv = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];
  for (const n of [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000]) {
    const data = randomBytes(n);
    assert.deepEqual(md5Resume(iv, 0, data), createHash('md5').update(data).digest(), `length ${n}`);
  }
});

test('HMAC-MD5 through the stored context equals node:crypto HMAC-MD5 (short, 64-byte and long keys)', () => {
  for (const keyLen of [0, 1, 16, 63, 64, 65, 200]) {
    for (const msgLen of [0, 20, 64, 300]) {
      const key = randomBytes(keyLen);
      const msg = randomBytes(msgLen);
      assert.deepEqual(hmacMd5FromContext(hmacMd5Context(key), msg), createHmac('md5', key).update(msg).digest(), `key ${keyLen}, message ${msgLen}`);
    }
  }
});

test('hmacMd5Context is byte for byte what `doveadm pw -s CRAM-MD5` stores', async () => {
  for (const pw of ['secret', 'Sekret pw ünï', 'x'.repeat(70)]) {
    const stored = await doveadmPw('CRAM-MD5', pw);
    assert.equal(hmacMd5Context(Buffer.from(pw)).toString('hex'), stored.slice('{CRAM-MD5}'.length));
  }
});

test('md5Crypt reproduces `doveadm pw -s MD5-CRYPT` and `mkpasswd -m md5crypt`', async () => {
  for (const pw of ['secret', 'Sekret pw ünï', 'a'.repeat(40)]) {
    const d = (await doveadmPw('MD5-CRYPT', pw)).slice('{MD5-CRYPT}'.length);
    const m = await mkpasswd('md5crypt', pw);
    assert.equal(md5Crypt(Buffer.from(pw), d), d);
    assert.equal(md5Crypt(Buffer.from(pw), m), m);
    assert.notEqual(md5Crypt(Buffer.from(pw + '!'), m), m);
  }
});

test('hmacMd5FromContext refuses a context that is not 32 bytes', () => {
  assert.throws(() => hmacMd5FromContext(Buffer.alloc(31), Buffer.from('x')), RangeError);
});
