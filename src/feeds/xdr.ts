// XDR (RFC 4506): the few primitives ONC RPC and the DRAC/portmapper messages need.
//
// Everything is a multiple of 4 bytes, big-endian. A reader never trusts a length it reads: every read is
// bounds-checked against the buffer and against the caller's limit, and a short or oversized field throws
// XdrError (the RPC layer turns that into GARBAGE_ARGS, an AUTH error, or a dropped datagram).
// Security: input here is whatever a network peer sent; nothing in this file allocates more than the
// buffer it was handed, plus the small results it returns.

export class XdrError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'XdrError';
  }
}

export class XdrReader {
  private off: number;

  constructor(
    private readonly buf: Buffer,
    offset = 0,
  ) {
    this.off = offset;
  }

  get offset(): number {
    return this.off;
  }

  get remaining(): number {
    return this.buf.length - this.off;
  }

  private need(n: number, what: string): void {
    if (this.off + n > this.buf.length) throw new XdrError(`${what}: needs ${n} bytes, ${this.remaining} left`);
  }

  /** unsigned int (RFC 4506 §4.2) */
  uint(what = 'unsigned int'): number {
    this.need(4, what);
    const v = this.buf.readUInt32BE(this.off);
    this.off += 4;
    return v;
  }

  /** int (RFC 4506 §4.1) */
  int(what = 'int'): number {
    this.need(4, what);
    const v = this.buf.readInt32BE(this.off);
    this.off += 4;
    return v;
  }

  /** variable-length opaque<max> (§4.10): a length, the bytes, zero padding to a multiple of 4 */
  opaque(max: number, what = 'opaque'): Buffer {
    const len = this.uint(`${what} length`);
    if (len > max) throw new XdrError(`${what}: length ${len} exceeds ${max}`);
    return this.bytes(len, what);
  }

  /** `len` bytes of data whose length was already read, plus their padding (a view, not a copy) */
  bytes(len: number, what = 'opaque'): Buffer {
    const padded = (len + 3) & ~3;
    this.need(padded, what);
    const out = this.buf.subarray(this.off, this.off + len);
    this.off += padded;
    return out;
  }

  /** string<max> (§4.11), decoded as latin1 so no byte sequence can fail or expand */
  string(max: number, what = 'string'): string {
    return this.opaque(max, what).toString('latin1');
  }
}

/** Writes into a fixed-size buffer; the caller knows the size of every message it builds. */
export class XdrWriter {
  private off = 0;
  private readonly buf: Buffer;

  constructor(size: number) {
    this.buf = Buffer.alloc(size);
  }

  uint(v: number): this {
    this.buf.writeUInt32BE(v >>> 0, this.off);
    this.off += 4;
    return this;
  }

  int(v: number): this {
    this.buf.writeInt32BE(v | 0, this.off);
    this.off += 4;
    return this;
  }

  opaque(data: Buffer): this {
    this.uint(data.length);
    data.copy(this.buf, this.off);
    this.off += (data.length + 3) & ~3;
    return this;
  }

  string(s: string): this {
    return this.opaque(Buffer.from(s, 'latin1'));
  }

  /** The bytes written so far. */
  done(): Buffer {
    return this.buf.subarray(0, this.off);
  }
}

/** Bytes an XDR string or opaque of `n` bytes takes on the wire (length + padded data). */
export function xdrOpaqueSize(n: number): number {
  return 4 + ((n + 3) & ~3);
}
