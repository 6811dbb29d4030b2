// ONC RPC version 2 (RFC 5531) message layer: decode a CALL header, build the standard replies, and the
// record marking of RPC over TCP (§11). Used by the DRAC server (drac.ts) and the portmapper client
// (portmap.ts); knows nothing about either program.
//
// What a server does with each kind of bad input (RFC 5531 §9 and what libtirpc's svc_* does):
//   - too short to hold an xid and a message type, or not a CALL: dropped (never answer a reply: two
//     servers could otherwise bounce datagrams at each other forever);
//   - rpcvers != 2: MSG_DENIED / RPC_MISMATCH (low 2, high 2);
//   - a truncated header or credential: dropped (there is no well-formed call to answer);
//   - a credential or verifier longer than 400 bytes, or a malformed AUTH_SYS body: MSG_DENIED / AUTH_ERROR
//     (AUTH_BADCRED / AUTH_BADVERF); a credential flavor other than AUTH_NONE / AUTH_SYS: AUTH_REJECTEDCRED;
//   - the rest (PROG_UNAVAIL, PROG_MISMATCH, PROC_UNAVAIL, GARBAGE_ARGS) is the program's to decide.
// Record marking: 4-byte header, high bit = last fragment, low 31 bits = fragment length. A record is
// bounded in total size and in fragment count; a peer that exceeds either loses its connection, because
// after a bad mark there is no way to find the next record boundary.
// Security: everything here is untrusted input; no reply is larger than the call that caused it (no UDP
// amplification), and no buffer grows beyond the configured record bound.

import { XdrError, XdrReader, XdrWriter } from './xdr.ts';

export const RPC_VERSION = 2;
export const MSG_CALL = 0;
export const MSG_REPLY = 1;

/** RFC 5531 §9 accept_stat */
export const AcceptStat = { SUCCESS: 0, PROG_UNAVAIL: 1, PROG_MISMATCH: 2, PROC_UNAVAIL: 3, GARBAGE_ARGS: 4, SYSTEM_ERR: 5 } as const;
/** RFC 5531 §9 auth_stat */
export const AuthStat = { AUTH_OK: 0, AUTH_BADCRED: 1, AUTH_REJECTEDCRED: 2, AUTH_BADVERF: 3, AUTH_REJECTEDVERF: 4, AUTH_TOOWEAK: 5 } as const;
export const AuthFlavor = { AUTH_NONE: 0, AUTH_SYS: 1 } as const;

/** RFC 5531 §8.2: opaque_auth bodies are at most 400 bytes. */
export const MAX_AUTH_BYTES = 400;
/** Longest AUTH_SYS machine name (RFC 5531 appendix A) and supplementary group list. */
const MAX_MACHINE_NAME = 255;
const MAX_GIDS = 16;

export interface RpcCall {
  readonly xid: number;
  readonly prog: number;
  readonly vers: number;
  readonly proc: number;
  readonly credFlavor: number;
  /** the procedure's arguments: the rest of the message */
  readonly args: Buffer;
}

export type ParsedCall =
  | { readonly kind: 'call'; readonly call: RpcCall }
  /** answer with `reply` (a MSG_DENIED), `error` names it for the log */
  | { readonly kind: 'deny'; readonly xid: number; readonly reply: Buffer; readonly error: string }
  /** no answer possible or wanted; `reason` for the log */
  | { readonly kind: 'drop'; readonly reason: string; readonly xid?: number };

/**
 * Decodes one RPC message (a UDP datagram, or a whole TCP record). Accepts AUTH_NONE and AUTH_SYS
 * credentials (DRAC clients send AUTH_NONE; the identity in AUTH_SYS is asserted by the client and
 * trusted by nobody here, but well-formed ones are accepted as libtirpc does).
 */
export function parseCall(msg: Buffer): ParsedCall {
  if (msg.length < 8) return { kind: 'drop', reason: `short message (${msg.length} bytes)` };
  const r = new XdrReader(msg);
  const xid = r.uint();
  const type = r.uint();
  if (type !== MSG_CALL) return { kind: 'drop', reason: type === MSG_REPLY ? 'a reply, not a call' : `unknown message type ${type}`, xid };
  try {
    const rpcvers = r.uint('rpcvers');
    if (rpcvers !== RPC_VERSION) return { kind: 'deny', xid, reply: rpcMismatchReply(xid), error: `RPC_MISMATCH (rpcvers ${rpcvers})` };
    const prog = r.uint('prog');
    const vers = r.uint('vers');
    const proc = r.uint('proc');
    const credFlavor = r.uint('cred flavor');
    const credLen = r.uint('cred length');
    if (credLen > MAX_AUTH_BYTES) return { kind: 'deny', xid, reply: authErrorReply(xid, AuthStat.AUTH_BADCRED), error: `AUTH_BADCRED (credential of ${credLen} bytes)` };
    const credBody = r.bytes(credLen, 'credential');
    const verfFlavor = r.uint('verifier flavor');
    const verfLen = r.uint('verifier length');
    if (verfLen > MAX_AUTH_BYTES) return { kind: 'deny', xid, reply: authErrorReply(xid, AuthStat.AUTH_BADVERF), error: `AUTH_BADVERF (verifier of ${verfLen} bytes)` };
    r.bytes(verfLen, 'verifier');
    if (credFlavor === AuthFlavor.AUTH_SYS) {
      if (!validAuthSys(credBody)) return { kind: 'deny', xid, reply: authErrorReply(xid, AuthStat.AUTH_BADCRED), error: 'AUTH_BADCRED (malformed AUTH_SYS credential)' };
    } else if (credFlavor !== AuthFlavor.AUTH_NONE) {
      return { kind: 'deny', xid, reply: authErrorReply(xid, AuthStat.AUTH_REJECTEDCRED), error: `AUTH_REJECTEDCRED (credential flavor ${credFlavor})` };
    }
    // A verifier other than AUTH_NONE means nothing with AUTH_NONE/AUTH_SYS credentials (RFC 5531 §14.1):
    // ignored, as libtirpc ignores it.
    void verfFlavor;
    return { kind: 'call', call: { xid, prog, vers, proc, credFlavor, args: msg.subarray(r.offset) } };
  } catch (err) {
    if (err instanceof XdrError) return { kind: 'drop', reason: `truncated call header (${err.message})`, xid };
    throw err;
  }
}

/** AUTH_SYS body (RFC 5531 appendix A): stamp, machinename<255>, uid, gid, gids<16>. */
function validAuthSys(body: Buffer): boolean {
  try {
    const r = new XdrReader(body);
    r.uint('stamp');
    r.opaque(MAX_MACHINE_NAME, 'machinename');
    r.uint('uid');
    r.uint('gid');
    const n = r.uint('gids length');
    if (n > MAX_GIDS) return false;
    for (let i = 0; i < n; i++) r.uint('gid');
    return r.remaining === 0;
  } catch {
    return false;
  }
}

// ---- replies -------------------------------------------------------------------------------------------

/** MSG_ACCEPTED with a null verifier; `tail` is the accept_stat's body (results, or mismatch info). */
function accepted(xid: number, stat: number, tail: Buffer | undefined): Buffer {
  const w = new XdrWriter(24 + (tail?.length ?? 0));
  w.uint(xid).uint(MSG_REPLY).uint(0 /* MSG_ACCEPTED */).uint(AuthFlavor.AUTH_NONE).uint(0).uint(stat);
  const head = w.done();
  return tail === undefined || tail.length === 0 ? head : Buffer.concat([head, tail]);
}

/** SUCCESS with the procedure's encoded results (empty for a void procedure such as NULL). */
export function successReply(xid: number, results?: Buffer): Buffer {
  return accepted(xid, AcceptStat.SUCCESS, results);
}

export function progUnavailReply(xid: number): Buffer {
  return accepted(xid, AcceptStat.PROG_UNAVAIL, undefined);
}

/** PROG_MISMATCH carries the lowest and highest version the server supports. */
export function progMismatchReply(xid: number, low: number, high: number): Buffer {
  return accepted(xid, AcceptStat.PROG_MISMATCH, new XdrWriter(8).uint(low).uint(high).done());
}

export function procUnavailReply(xid: number): Buffer {
  return accepted(xid, AcceptStat.PROC_UNAVAIL, undefined);
}

export function garbageArgsReply(xid: number): Buffer {
  return accepted(xid, AcceptStat.GARBAGE_ARGS, undefined);
}

export function systemErrReply(xid: number): Buffer {
  return accepted(xid, AcceptStat.SYSTEM_ERR, undefined);
}

/** MSG_DENIED / RPC_MISMATCH: this server speaks RPC version 2 only. */
export function rpcMismatchReply(xid: number): Buffer {
  return new XdrWriter(24).uint(xid).uint(MSG_REPLY).uint(1 /* MSG_DENIED */).uint(0 /* RPC_MISMATCH */).uint(RPC_VERSION).uint(RPC_VERSION).done();
}

/** MSG_DENIED / AUTH_ERROR with the auth_stat. */
export function authErrorReply(xid: number, stat: number): Buffer {
  return new XdrWriter(20).uint(xid).uint(MSG_REPLY).uint(1 /* MSG_DENIED */).uint(1 /* AUTH_ERROR */).uint(stat).done();
}

// ---- calls (the client side, for the portmapper) --------------------------------------------------------

/** A CALL with AUTH_NONE credential and verifier. */
export function encodeCall(xid: number, prog: number, vers: number, proc: number, args: Buffer): Buffer {
  const head = new XdrWriter(40).uint(xid).uint(MSG_CALL).uint(RPC_VERSION).uint(prog).uint(vers).uint(proc).uint(0).uint(0).uint(0).uint(0).done();
  return Buffer.concat([head, args]);
}

export type ParsedReply =
  | { readonly kind: 'success'; readonly xid: number; readonly results: Buffer }
  | { readonly kind: 'error'; readonly xid: number; readonly error: string };

/** Decodes a reply (client side). Throws XdrError when it is not even a well-formed reply header. */
export function parseReply(msg: Buffer): ParsedReply {
  const r = new XdrReader(msg);
  const xid = r.uint('xid');
  if (r.uint('msg type') !== MSG_REPLY) throw new XdrError('not a reply');
  const stat = r.uint('reply_stat');
  if (stat === 1) {
    const rej = r.uint('reject_stat');
    if (rej === 0) return { kind: 'error', xid, error: `RPC_MISMATCH ${r.uint()}..${r.uint()}` };
    return { kind: 'error', xid, error: `AUTH_ERROR ${r.uint('auth_stat')}` };
  }
  r.uint('verifier flavor');
  r.opaque(MAX_AUTH_BYTES, 'verifier');
  const accept = r.uint('accept_stat');
  if (accept !== AcceptStat.SUCCESS) {
    const name = Object.entries(AcceptStat).find(([, v]) => v === accept)?.[0] ?? `accept_stat ${accept}`;
    return { kind: 'error', xid, error: name };
  }
  return { kind: 'success', xid, results: msg.subarray(r.offset) };
}

// ---- record marking (RFC 5531 §11) ----------------------------------------------------------------------

const LAST_FRAGMENT = 0x80000000;

/** One record as a single last fragment. */
export function frameRecord(msg: Buffer): Buffer {
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE((LAST_FRAGMENT | msg.length) >>> 0, 0);
  return Buffer.concat([head, msg]);
}

export interface RecordLimits {
  /** largest record (sum of its fragments) accepted */
  readonly maxRecord: number;
  /** most fragments in one record (zero-length fragments count too) */
  readonly maxFragments: number;
}

/**
 * Reassembles records from a byte stream. push() returns the records completed by this chunk, or an
 * error string once the stream is unusable (the caller then closes the connection); after an error every
 * further push() returns the same error.
 */
export class RecordReader {
  private head: Buffer = Buffer.alloc(0);
  private fragLeft = -1; // bytes left in the current fragment; -1: reading a header
  private fragLast = false;
  private fragments = 0;
  private record: Buffer[] = [];
  private recordBytes = 0;
  private failed: string | undefined;

  constructor(private readonly limits: RecordLimits) {}

  push(chunk: Buffer): Buffer[] | string {
    if (this.failed !== undefined) return this.failed;
    const out: Buffer[] = [];
    let off = 0;
    while (off < chunk.length) {
      if (this.fragLeft < 0) {
        const need = 4 - this.head.length;
        const take = chunk.subarray(off, off + need);
        off += take.length;
        this.head = this.head.length === 0 ? Buffer.from(take) : Buffer.concat([this.head, take]);
        if (this.head.length < 4) break;
        const mark = this.head.readUInt32BE(0);
        this.head = Buffer.alloc(0);
        this.fragLast = (mark & LAST_FRAGMENT) !== 0;
        this.fragLeft = mark & 0x7fffffff;
        if (++this.fragments > this.limits.maxFragments) return this.fail(`record of more than ${this.limits.maxFragments} fragments`);
        if (this.recordBytes + this.fragLeft > this.limits.maxRecord) {
          return this.fail(`record mark announces ${this.recordBytes + this.fragLeft} bytes, more than the ${this.limits.maxRecord} allowed`);
        }
      }
      const take = chunk.subarray(off, off + this.fragLeft);
      off += take.length;
      this.fragLeft -= take.length;
      if (take.length > 0) {
        this.record.push(take);
        this.recordBytes += take.length;
      }
      if (this.fragLeft === 0) {
        this.fragLeft = -1;
        if (this.fragLast) {
          // Copy: the record may outlive the socket's chunk buffers.
          out.push(Buffer.concat(this.record, this.recordBytes));
          this.record = [];
          this.recordBytes = 0;
          this.fragments = 0;
        }
      }
    }
    return out;
  }

  /** Bytes of a record still being received (0 between records). */
  get partialBytes(): number {
    return this.recordBytes + this.head.length;
  }

  private fail(why: string): string {
    this.failed = why;
    this.record = [];
    return why;
  }
}
