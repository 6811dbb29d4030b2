// MD5 at block level, for the two password formats node:crypto cannot produce:
//
// - Dovecot's {CRAM-MD5} scheme stores no hash of the password but the two MD5 states of HMAC-MD5 after
//   the key pads (RFC 2104): 32 bytes = outer A,B,C,D then inner A,B,C,D, each 32-bit little-endian, hex
//   encoded (Dovecot src/lib/hmac-md5.c hmac_md5_get_cram_context; the same layout as Cyrus/UW
//   "CRAM-MD5 context"). Checking a CRAM-MD5 response means *resuming* MD5 from those states, and
//   createHash('md5') has no way to set its state, so the compression function (RFC 1321 §3.4) is here.
// - MD5-CRYPT (`$1$`, Poul-Henning Kamp's md5crypt), which Dovecot implements itself and which neither
//   unixcrypt nor bcryptjs covers; it only needs whole-message MD5, so it uses node:crypto.
//
// Security: the inputs are the stored entry (operator data) and the client's password or challenge (untrusted,
// bounded by the SMTP line length). Nothing here compares secrets: callers compare the results with
// crypto.timingSafeEqual. MD5 is used only because these legacy formats are defined with it.

import { createHash } from 'node:crypto';

const S = [7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
  4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21];
const K = Array.from({ length: 64 }, (_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32) >>> 0);
const IV: readonly number[] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

/** One MD5 compression of the 64-byte block at `off`, updating `st` (A, B, C, D) in place. */
function compress(st: Uint32Array, block: Uint8Array, off: number): void {
  const m = new Uint32Array(16);
  for (let i = 0; i < 16; i++) {
    const j = off + i * 4;
    m[i] = (block[j]! | (block[j + 1]! << 8) | (block[j + 2]! << 16) | (block[j + 3]! << 24)) >>> 0;
  }
  let a = st[0]!;
  let b = st[1]!;
  let c = st[2]!;
  let d = st[3]!;
  for (let i = 0; i < 64; i++) {
    let f: number;
    let g: number;
    if (i < 16) {
      f = (b & c) | (~b & d);
      g = i;
    } else if (i < 32) {
      f = (d & b) | (~d & c);
      g = (5 * i + 1) & 15;
    } else if (i < 48) {
      f = b ^ c ^ d;
      g = (3 * i + 5) & 15;
    } else {
      f = c ^ (b | ~d);
      g = (7 * i) & 15;
    }
    const t = d;
    d = c;
    c = b;
    const x = (a + f + K[i]! + m[g]!) >>> 0;
    const s = S[i]!;
    b = (b + ((x << s) | (x >>> (32 - s)))) >>> 0;
    a = t;
  }
  st[0] = (st[0]! + a) >>> 0;
  st[1] = (st[1]! + b) >>> 0;
  st[2] = (st[2]! + c) >>> 0;
  st[3] = (st[3]! + d) >>> 0;
}

/**
 * Finishes an MD5 computation that had already consumed `doneBytes` bytes (a multiple of 64) and reached
 * `state`, over `data`; returns the 16-byte digest.
 */
export function md5Resume(state: readonly number[], doneBytes: number, data: Uint8Array): Buffer {
  const st = Uint32Array.from(state);
  const total = doneBytes + data.length;
  const padLen = ((data.length + 8) >> 6) * 64 + 64;
  const buf = new Uint8Array(padLen);
  buf.set(data);
  buf[data.length] = 0x80;
  // message length in bits, 64-bit little-endian (lengths here stay far below 2^53)
  let bits = total * 8;
  for (let i = 0; i < 8; i++) {
    buf[padLen - 8 + i] = bits % 256;
    bits = Math.floor(bits / 256);
  }
  for (let off = 0; off < padLen; off += 64) compress(st, buf, off);
  const out = Buffer.alloc(16);
  for (let i = 0; i < 4; i++) out.writeUInt32LE(st[i]!, i * 4);
  return out;
}

/** Dovecot's {CRAM-MD5} value for a key (password): 32 bytes, outer state then inner state. */
export function hmacMd5Context(key: Uint8Array): Buffer {
  let k = Buffer.from(key);
  if (k.length > 64) k = createHash('md5').update(k).digest();
  const ipad = new Uint8Array(64);
  const opad = new Uint8Array(64);
  for (let i = 0; i < 64; i++) {
    const b = i < k.length ? k[i]! : 0;
    ipad[i] = b ^ 0x36;
    opad[i] = b ^ 0x5c;
  }
  const inner = Uint32Array.from(IV);
  const outer = Uint32Array.from(IV);
  compress(inner, ipad, 0);
  compress(outer, opad, 0);
  const out = Buffer.alloc(32);
  for (let i = 0; i < 4; i++) {
    out.writeUInt32LE(outer[i]!, i * 4);
    out.writeUInt32LE(inner[i]!, 16 + i * 4);
  }
  return out;
}

/** HMAC-MD5(key, message) computed from a stored {CRAM-MD5} context (32 bytes, see hmacMd5Context). */
export function hmacMd5FromContext(context: Uint8Array, message: Uint8Array): Buffer {
  if (context.length !== 32) throw new RangeError('CRAM-MD5 context must be 32 bytes');
  const c = Buffer.from(context);
  const outer = [0, 1, 2, 3].map((i) => c.readUInt32LE(i * 4));
  const inner = [0, 1, 2, 3].map((i) => c.readUInt32LE(16 + i * 4));
  const innerDigest = md5Resume(inner, 64, message);
  return md5Resume(outer, 64, innerDigest);
}

const ITOA64 = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

function to64(v: number, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) {
    s += ITOA64[v & 0x3f];
    v >>>= 6;
  }
  return s;
}

/** md5crypt: `$1$<salt>$<22 chars>` for a password and a salt (at most 8 characters, up to the next `$`). */
export function md5Crypt(password: Uint8Array, setting: string): string {
  const magic = '$1$';
  let salt = setting.startsWith(magic) ? setting.slice(magic.length) : setting;
  const end = salt.indexOf('$');
  if (end !== -1) salt = salt.slice(0, end);
  salt = salt.slice(0, 8);
  const pw = Buffer.from(password);
  const saltBuf = Buffer.from(salt, 'latin1');
  const alt = createHash('md5').update(pw).update(saltBuf).update(pw).digest();
  const ctx = createHash('md5').update(pw).update(magic).update(saltBuf);
  for (let left = pw.length; left > 0; left -= 16) ctx.update(alt.subarray(0, Math.min(16, left)));
  for (let i = pw.length; i > 0; i >>= 1) ctx.update(i & 1 ? Buffer.from([0]) : pw.subarray(0, 1));
  let fin = ctx.digest();
  for (let i = 0; i < 1000; i++) {
    const c = createHash('md5');
    c.update(i & 1 ? pw : fin);
    if (i % 3) c.update(saltBuf);
    if (i % 7) c.update(pw);
    c.update(i & 1 ? fin : pw);
    fin = c.digest();
  }
  const f = (a: number, b: number, c: number): string => to64((fin[a]! << 16) | (fin[b]! << 8) | fin[c]!, 4);
  const hash = f(0, 6, 12) + f(1, 7, 13) + f(2, 8, 14) + f(3, 9, 15) + f(4, 10, 5) + to64(fin[11]!, 2);
  return `${magic}${salt}$${hash}`;
}
