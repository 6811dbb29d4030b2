// Dovecot password schemes (`{SCHEME}data`), parsed once when a passwd-file is loaded and verified per AUTH.
//
// Supported (names as Dovecot 2.3 spells them, case-insensitive, with Dovecot's `.HEX` / `.B64` / `.BASE64`
// encoding suffix where the scheme stores bytes):
//   PLAIN / CLEAR / CLEARTEXT            cleartext (also the only input, with CRAM-MD5, for the CRAM-MD5 mechanism)
//   CRAM-MD5                             HMAC-MD5 context, 64 hex digits (md5.ts); verifies PLAIN and CRAM-MD5
//   CRYPT, SHA256-CRYPT, SHA512-CRYPT,   crypt(3) strings, dispatched on their prefix like libc crypt():
//   BLF-CRYPT, MD5-CRYPT (alias MD5)       `$5$`/`$6$` unixcrypt, `$2a$`/`$2b$`/`$2y$` bcryptjs, `$1$` md5.ts
//   ARGON2I, ARGON2ID                    PHC strings, @node-rs/argon2
//   SSHA, SSHA256, SSHA512, SMD5         base64(digest(password ‖ salt) ‖ salt)
//   SHA (SHA1), SHA256, SHA512, PLAIN-MD5, LDAP-MD5   unsalted digests
// Anything else (DES crypt, yescrypt `$y$`, DIGEST-MD5, SCRAM-*, OTP, PBKDF2, ...) is reported at load time
// and that user cannot log in; the rest of the file still works.
//
// Security: every comparison of a computed value with a stored one goes through crypto.timingSafeEqual
// (cleartext through SHA-256 digests of both sides, so the length does not leak either). The stored data
// is operator-controlled; a malformed value makes the entry unusable, never "any password".

import { createHash, timingSafeEqual } from 'node:crypto';
import { verify as argon2Verify } from '@node-rs/argon2';
import { hmacMd5Context, hmacMd5FromContext, md5Crypt } from './md5.ts';
import type { CryptPool } from './crypt-pool.ts';

type Encoding = 'hex' | 'base64';

export type StoredPassword =
  | { readonly kind: 'plain'; readonly scheme: string; readonly value: Buffer }
  | { readonly kind: 'cram-md5'; readonly scheme: string; readonly context: Buffer }
  | { readonly kind: 'crypt'; readonly scheme: string; readonly value: string; readonly algo: 'md5' | 'sha' | 'bcrypt' }
  | { readonly kind: 'argon2'; readonly scheme: string; readonly value: string }
  | { readonly kind: 'digest'; readonly scheme: string; readonly hash: string; readonly size: number; readonly salted: boolean; readonly raw: Buffer };

export type ParseResult = { readonly ok: true; readonly stored: StoredPassword } | { readonly ok: false; readonly problem: string };

const DIGESTS: Record<string, { hash: string; size: number; salted: boolean; encoding: Encoding }> = {
  SSHA: { hash: 'sha1', size: 20, salted: true, encoding: 'base64' },
  SSHA256: { hash: 'sha256', size: 32, salted: true, encoding: 'base64' },
  SSHA512: { hash: 'sha512', size: 64, salted: true, encoding: 'base64' },
  SMD5: { hash: 'md5', size: 16, salted: true, encoding: 'base64' },
  SHA: { hash: 'sha1', size: 20, salted: false, encoding: 'base64' },
  SHA1: { hash: 'sha1', size: 20, salted: false, encoding: 'base64' },
  SHA256: { hash: 'sha256', size: 32, salted: false, encoding: 'base64' },
  SHA512: { hash: 'sha512', size: 64, salted: false, encoding: 'base64' },
  'LDAP-MD5': { hash: 'md5', size: 16, salted: false, encoding: 'base64' },
  'PLAIN-MD5': { hash: 'md5', size: 16, salted: false, encoding: 'hex' },
};
const PLAIN_NAMES = new Set(['PLAIN', 'CLEAR', 'CLEARTEXT']);
const CRYPT_NAMES = new Set(['CRYPT', 'MD5-CRYPT', 'MD5', 'SHA256-CRYPT', 'SHA512-CRYPT', 'BLF-CRYPT']);
const ARGON2_NAMES = new Set(['ARGON2I', 'ARGON2ID']);

/** The names parseStoredPassword() accepts (without encoding suffixes), for docs and tests. */
export const SUPPORTED_SCHEMES: readonly string[] = [
  ...PLAIN_NAMES, 'CRAM-MD5', ...CRYPT_NAMES, ...ARGON2_NAMES, ...Object.keys(DIGESTS),
];

const CRYPT_FORMATS: ReadonlyArray<readonly [RegExp, 'md5' | 'sha' | 'bcrypt']> = [
  [/^\$1\$[^$]{0,8}\$[./0-9A-Za-z]{22}$/, 'md5'],
  [/^\$5\$(?:rounds=\d{1,9}\$)?[./0-9A-Za-z]{0,16}\$[./0-9A-Za-z]{43}$/, 'sha'],
  [/^\$6\$(?:rounds=\d{1,9}\$)?[./0-9A-Za-z]{0,16}\$[./0-9A-Za-z]{86}$/, 'sha'],
  [/^\$2[aby]\$(?:0[4-9]|[12]\d|3[01])\$[./0-9A-Za-z]{53}$/, 'bcrypt'],
];

function decode(text: string, encoding: Encoding): Buffer | undefined {
  if (encoding === 'hex') return /^(?:[0-9a-fA-F]{2})*$/.test(text) ? Buffer.from(text, 'hex') : undefined;
  return /^[A-Za-z0-9+/]*={0,2}$/.test(text) ? Buffer.from(text, 'base64') : undefined;
}

/**
 * Parses the password field of a passwd-file entry. Without `{SCHEME}` the field is in `defaultScheme`
 * (Dovecot's passwd-file default is CRYPT).
 */
export function parseStoredPassword(field: string, defaultScheme = 'CRYPT'): ParseResult {
  let schemeText = defaultScheme;
  let data = field;
  const m = /^\{([^{}]{1,64})\}/.exec(field);
  if (m) {
    schemeText = m[1]!;
    data = field.slice(m[0].length);
  }
  let name = schemeText.toUpperCase();
  let encoding: Encoding | undefined;
  const enc = /\.(HEX|B64|BASE64)$/.exec(name);
  if (enc) {
    encoding = enc[1] === 'HEX' ? 'hex' : 'base64';
    name = name.slice(0, -enc[0].length);
  }
  const bad = (problem: string): ParseResult => ({ ok: false, problem: `{${schemeText}}: ${problem}` });

  if (PLAIN_NAMES.has(name)) {
    const value = encoding ? decode(data, encoding) : Buffer.from(data, 'utf8');
    if (!value) return bad(`not valid ${encoding}`);
    if (value.length === 0) return bad('empty password');
    return { ok: true, stored: { kind: 'plain', scheme: name, value } };
  }
  if (name === 'CRAM-MD5') {
    const context = decode(data, encoding ?? 'hex');
    if (!context || context.length !== 32) return bad('expected 64 hex digits (the HMAC-MD5 context)');
    return { ok: true, stored: { kind: 'cram-md5', scheme: name, context } };
  }
  if (CRYPT_NAMES.has(name)) {
    if (encoding) return bad('crypt strings take no encoding suffix');
    const format = CRYPT_FORMATS.find(([re]) => re.test(data));
    if (!format) {
      const what = data.startsWith('$y$') ? 'yescrypt' : data.startsWith('$7$') ? 'scrypt' : /^[./0-9A-Za-z]{13}$/.test(data) ? 'DES crypt' : 'this crypt format';
      return bad(`${what} is not supported (use SHA512-CRYPT, BLF-CRYPT or ARGON2ID)`);
    }
    if ((name === 'MD5-CRYPT' || name === 'MD5') && format[1] !== 'md5') return bad('expected a $1$ string');
    return { ok: true, stored: { kind: 'crypt', scheme: name, value: data, algo: format[1] } };
  }
  if (ARGON2_NAMES.has(name)) {
    if (!/^\$argon2id?\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/.test(data)) return bad('expected a $argon2i$/$argon2id$ string');
    return { ok: true, stored: { kind: 'argon2', scheme: name, value: data } };
  }
  const d = DIGESTS[name];
  if (d) {
    const raw = decode(data, encoding ?? d.encoding);
    if (!raw) return bad(`not valid ${encoding ?? d.encoding}`);
    if (d.salted ? raw.length <= d.size : raw.length !== d.size) return bad(`wrong length for ${name}`);
    return { ok: true, stored: { kind: 'digest', scheme: name, hash: d.hash, size: d.size, salted: d.salted, raw } };
  }
  return bad('unknown password scheme');
}

/** Equal-time comparison of two byte strings of any lengths (digests first, so length is not leaked). */
export function safeEqual(a: Uint8Array, b: Uint8Array): boolean {
  const da = createHash('sha256').update(a).digest();
  const db = createHash('sha256').update(b).digest();
  return timingSafeEqual(da, db) && a.length === b.length;
}

/**
 * Does `password` match the stored entry? Rejects (throws) only when the machinery fails (a crypt worker
 * died or timed out): the caller answers tempfail then, never ok.
 */
export async function verifyPassword(stored: StoredPassword, password: string, pool: CryptPool, timeoutMs: number): Promise<boolean> {
  const pw = Buffer.from(password, 'utf8');
  switch (stored.kind) {
    case 'plain':
      return safeEqual(pw, stored.value);
    case 'cram-md5':
      return timingSafeEqual(hmacMd5Context(pw), stored.context);
    case 'digest': {
      const digest = stored.raw.subarray(0, stored.size);
      const salt = stored.raw.subarray(stored.size);
      const h = createHash(stored.hash).update(pw).update(salt).digest();
      return timingSafeEqual(h, digest);
    }
    case 'argon2':
      return argon2Verify(stored.value, pw);
    case 'crypt': {
      const out =
        stored.algo === 'md5'
          ? md5Crypt(pw, stored.value)
          : stored.algo === 'bcrypt'
            ? await pool.crypt('bcrypt', password, stored.value.slice(0, 29), timeoutMs)
            : // unixcrypt wants the setting only (`$6$[rounds=N$]salt`), not the whole string
              await pool.crypt('sha-crypt', password, stored.value.slice(0, stored.value.lastIndexOf('$')), timeoutMs);
      return safeEqual(Buffer.from(out, 'latin1'), Buffer.from(stored.value, 'latin1'));
    }
  }
}

/** Can this entry check a CRAM-MD5 response? Only when it holds the cleartext or Dovecot's HMAC-MD5 context. */
export function cramMd5Capable(stored: StoredPassword): boolean {
  return stored.kind === 'plain' || stored.kind === 'cram-md5';
}

/** Checks a CRAM-MD5 digest (hex) for `challenge`; false when the entry cannot (see cramMd5Capable). */
export function verifyCramMd5(stored: StoredPassword, challenge: string, digestHex: string): boolean {
  if (!/^[0-9a-fA-F]{32}$/.test(digestHex)) return false;
  const msg = Buffer.from(challenge, 'utf8');
  let expected: Buffer;
  if (stored.kind === 'plain') expected = hmacMd5FromContext(hmacMd5Context(stored.value), msg);
  else if (stored.kind === 'cram-md5') expected = hmacMd5FromContext(stored.context, msg);
  else return false;
  return timingSafeEqual(expected, Buffer.from(digestHex, 'hex'));
}
