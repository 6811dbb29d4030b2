// The access map on LMDB (lmdb-js): relaygate's embedded default store of POP-before-SMTP grants.
//
// Layout (one LMDB environment in the directory `path`: data.mdb + lock.mdb), three named databases:
//   meta    `format` → {format:'relaygate-access-map', version:1}: refuse layouts we do not know
//   grants  ip (normalizeIp text, ordered-binary string key, so LMDB order = IP string order for list())
//           → compact binary record (encodeGrant below; expiry first so lookup can reject early)
//   state   source name → JSON (a tailer's file position, a journald cursor), written in the same transaction
//           as the grants the source's lines produced, so a restart neither loses nor repeats a login
//   expiry  8-byte big-endian expiry ms ‖ ip bytes → empty. The expiry index: sweep() walks it from the
//           lowest key up to `now` and so touches only expired grants (O(expired)), never the live ones.
// Invariant: exactly one expiry entry per grant, with the grant's current expiry. Every write that changes
// an expiry (record sliding it, delete, sweep) updates both in the same write transaction.
//
// Reads (lookup, list, stats) use lmdb-js's synchronous get/range calls: they are reads of a memory map
// under an MVCC read transaction (no syscall, no lock, never blocked by a writer), cheaper than any
// promise round trip. Writes go through lmdb-js's asynchronous transactions: the callback runs briefly on
// this thread, commit and fsync happen on lmdb-js's write thread.
// Durability: lmdb-js's default on Linux (overlappingSync) acknowledges a commit once it is visible and
// flushes it right after, without holding up the next transaction. A crash of the machine can so lose the
// last acknowledged transactions, but only whole: LMDB reopens at the last flushed one (lmdb-js compares
// the boot id), where every source position still sits with the grants its lines produced, so the lines
// after it are read again and no login is lost or counted twice. A crash of relaygate alone loses nothing.
//
// Security: login events come from log watchers and network feeds, so every field is untrusted: the IP goes
// through normalizeIp() (junk refused), mynetworks/never_authorize are never recorded, a login time in the
// future counts as now (a skewed or hostile feed cannot stretch a grant beyond its ttl), and strings are
// length-capped before they are stored. The data directory is trusted to be relaygate's own, but not to be
// intact: lmdb-js crashes the whole process (SIGSEGV/SIGBUS) on a garbage, truncated or page-damaged
// data.mdb instead of returning an error, which would be a crash loop under systemd. So before LMDB maps
// it here, its meta pages are checked in-process and every page is read once in a child process (verify);
// any damage becomes RG_ERR_STORE_OPEN naming the path and the fix, and the files are left untouched.

import { open as openLmdb, type Database, type RootDatabase } from 'lmdb';
import { mkdir, open as openFile, stat, access, constants as fsConstants } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';
import { normalizeIp, type CidrSet } from '../net/index.ts';
import { RelaygateError } from '../errors.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log/logger.ts';
import type { AccessMap, BatchOutcome, Grant, LoginEvent, MapStats, RecordResult, RefusalReason } from './types.ts';
import { prepareLogin, isRefusal, type LoginRules, type PreparedLogin } from './login.ts';

export interface LmdbAccessMapOptions {
  /** directory holding data.mdb and lock.mdb; created (mode 0700) when missing */
  readonly path: string;
  /** default grant lifetime in seconds (Postfix-style `grace`; 30 minutes) */
  readonly grace?: number;
  readonly mynetworks: CidrSet;
  readonly neverAuthorize: CidrSet;
  readonly clock: Clock;
  readonly logger: Logger;
  /** LMDB map size in bytes; lmdb-js grows the map on demand, this sets the starting reservation */
  readonly mapSize?: number;
  /**
   * Walk an existing store in a child process before opening it here (default true). lmdb-js crashes
   * the process on a damaged B-tree page; the walk turns that into RG_ERR_STORE_OPEN at start-up, so a
   * daemon that crashed once on a bad disk refuses cleanly at its restart instead of crash-looping.
   * Costs one short-lived node process plus a read of every page (~0.1 s + ~0.5 s per million grants).
   */
  readonly verify?: boolean;
  /** give up on the walk after this long (then open anyway, with a warning); default 120 s */
  readonly verifyTimeoutMs?: number;
}

/** The on-disk layout this code reads and writes; bump on any incompatible change and refuse the others. */
export const STORE_FORMAT = 'relaygate-access-map';
export const STORE_FORMAT_VERSION = 1;
export const DEFAULT_GRACE_SECONDS = 1800;

/**
 * Grants deleted per sweep transaction. Each chunk runs its callback on the main thread (~3 µs per grant
 * here, ~6 ms per chunk), far below the 50 ms pause budget; between chunks we await the commit, which
 * yields to the event loop (bench/store.ts measures the longest pause a concurrent lookup sees).
 * SWEEP_SLICE_MS also ends a chunk early on a slow or busy machine, so the bound holds in time, not
 * only in count.
 */
export const SWEEP_CHUNK = 2000;
export const SWEEP_SLICE_MS = 10;

/** Longest user / service / source stored, in UTF-16 units: logs and feeds are untrusted. */
const MAX_TEXT = 256;
const RECORD_VERSION = 1;
const NULL_LEN = 0xffff;
const HEADER = 1 + 8 + 8 + 8 + 4; // version, expires, lastSeen, firstSeen, count
const EMPTY = Buffer.alloc(0);
const LMDB_MAGIC = 0xbeefc0de;

interface MetaRecord {
  readonly format: string;
  readonly version: number;
  readonly created?: number;
}

/** A grant without its key (the IP is the LMDB key, not stored twice). */
interface Stored {
  expires: number;
  lastSeen: number;
  firstSeen: number;
  count: number;
  user: string | null;
  service: string | null;
  source: string;
}

// ---------------------------------------------------------------------------------------------------------
// Value and key encodings

function textBytes(s: string | null): number {
  return s === null ? 2 : 2 + Buffer.byteLength(s, 'utf8');
}

function writeText(buf: Buffer, off: number, s: string | null): number {
  if (s === null) {
    buf.writeUInt16LE(NULL_LEN, off);
    return off + 2;
  }
  // Short ASCII (IPs, most user names, services, sources) is copied by hand: cheaper than a native
  // Buffer#write call per field on the ingest path. Anything else goes through the UTF-8 encoder.
  const len = s.length;
  let n = 0;
  if (len <= 64) {
    const at = off + 2;
    while (n < len) {
      const c = s.charCodeAt(n);
      if (c > 0x7f) break;
      buf[at + n++] = c;
    }
  }
  if (n < len) n = buf.write(s, off + 2, 'utf8');
  buf[off] = n & 0xff;
  buf[off + 1] = n >>> 8;
  return off + 2 + n;
}

/** Largest encoded grant: the header and three texts of MAX_TEXT UTF-16 units, each at most 3 UTF-8 bytes. */
const MAX_RECORD = HEADER + 3 * (2 + MAX_TEXT * 3);

/** Writes the record for `g` into `buf` (at least MAX_RECORD bytes for capped texts); returns its length. */
function encodeGrantInto(buf: Buffer, g: Stored): number {
  buf[0] = RECORD_VERSION;
  buf.writeDoubleLE(g.expires, 1);
  buf.writeDoubleLE(g.lastSeen, 9);
  buf.writeDoubleLE(g.firstSeen, 17);
  buf.writeUInt32LE(g.count, 25);
  let off = writeText(buf, HEADER, g.user);
  off = writeText(buf, off, g.service);
  return writeText(buf, off, g.source);
}

export function encodeGrant(g: Stored): Buffer {
  const buf = Buffer.allocUnsafe(HEADER + textBytes(g.user) + textBytes(g.service) + textBytes(g.source));
  encodeGrantInto(buf, g);
  return buf;
}

/** Reads only the expiry: lookups of expired grants and the sweep need nothing else. */
function expiresOf(buf: Buffer): number {
  if (buf.length < HEADER || buf[0] !== RECORD_VERSION) throw new Error(`unknown grant record (version byte ${buf[0]}, ${buf.length} bytes)`);
  return buf.readDoubleLE(1);
}

export function decodeGrant(buf: Buffer): Stored {
  const expires = expiresOf(buf);
  const lastSeen = buf.readDoubleLE(9);
  const firstSeen = buf.readDoubleLE(17);
  const count = buf.readUInt32LE(25);
  let off = HEADER;
  const texts: (string | null)[] = [];
  for (let i = 0; i < 3; i++) {
    if (off + 2 > buf.length) throw new Error('truncated grant record');
    const n = buf.readUInt16LE(off);
    off += 2;
    if (n === NULL_LEN) {
      texts.push(null);
      continue;
    }
    if (off + n > buf.length) throw new Error('truncated grant record');
    texts.push(buf.toString('utf8', off, off + n));
    off += n;
  }
  return { expires, lastSeen, firstSeen, count, user: texts[0]!, service: texts[1]!, source: texts[2] ?? '' };
}

/** decodeGrant into `g`; without `texts` only the numbers (the caller replaces user, service and source). */
function decodeGrantInto(buf: Buffer, g: Stored, texts: boolean): void {
  if (texts) {
    Object.assign(g, decodeGrant(buf));
    return;
  }
  g.expires = expiresOf(buf);
  g.lastSeen = buf.readDoubleLE(9);
  g.firstSeen = buf.readDoubleLE(17);
  g.count = buf.readUInt32LE(25);
}

/** Expiry index key: big-endian ms (so byte order = time order) followed by the IP's ASCII text. */
function indexKey(expires: number, ip?: string): Buffer {
  const n = ip === undefined ? 0 : ip.length;
  const key = Buffer.allocUnsafe(8 + n);
  key.writeUInt32BE(Math.floor(expires / 0x100000000), 0);
  key.writeUInt32BE(expires >>> 0, 4);
  if (ip !== undefined) key.write(ip, 8, 'latin1');
  return key;
}

function indexKeyExpires(key: Uint8Array): number {
  const b = Buffer.from(key.buffer, key.byteOffset, key.byteLength);
  return b.readUInt32BE(0) * 0x100000000 + b.readUInt32BE(4);
}

function indexKeyIp(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1', 8);
}

/** First index key after every grant expired at `now` (expires <= now): the exclusive end of sweep ranges. */
function expiredEnd(now: number): Buffer {
  return indexKey(Math.floor(now) + 1);
}

/** In the field order of the Grant interface, so JSON output reads naturally. */
function toGrant(ip: string, s: Stored): Grant {
  return { ip, user: s.user, service: s.service, source: s.source, firstSeen: s.firstSeen, lastSeen: s.lastSeen, expires: s.expires, count: s.count };
}

function shown(input: unknown): string {
  const s = typeof input === 'string' ? input : String(input);
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}…` : s);
}

function causeText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// ---------------------------------------------------------------------------------------------------------
// Opening: every way the directory can be wrong becomes one RG_ERR_STORE_OPEN naming the path and the fix

const MOVE_ASIDE = 'move the directory aside (or delete it) and restart: grants are re-learned from the next logins';

function openError(path: string, problem: string, fix: string, cause?: unknown): RelaygateError {
  return new RelaygateError('RG_ERR_STORE_OPEN', `cannot open access map ${path}: ${problem}; ${fix}`, cause === undefined ? undefined : { cause });
}

/**
 * Checks data.mdb's two LMDB meta pages before lmdb-js maps the file: lmdb-js takes the process down with
 * SIGSEGV on a garbage header and SIGBUS on a file shorter than its meta page says, where we want an error.
 * Returns a description of the damage, or undefined when the file is absent (new store) or looks sound.
 * Deeper damage (a garbage B-tree page) is reported by LMDB itself as MDB_CORRUPTED at first read.
 */
export async function checkDataFile(file: string): Promise<string | undefined> {
  let fh;
  try {
    fh = await openFile(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const { size } = await fh.stat();
    if (size === 0) return 'data.mdb is empty (0 bytes): it was never initialized or was truncated';
    const head = Buffer.alloc(256);
    await fh.read(head, 0, head.length, 0);
    // lmdb-js's data format v2 has a 24-byte page header (stock LMDB: 16); accept either.
    const m = [24, 16].find((o) => head.readUInt32LE(o) === LMDB_MAGIC);
    if (m === undefined) return 'data.mdb is not an LMDB file (no LMDB magic number in its header)';
    const psize = head.readUInt32LE(m + 24);
    if (psize < 512 || psize > 65536 || (psize & (psize - 1)) !== 0) return `data.mdb has a damaged header (page size ${psize})`;
    if (size < 2 * psize) return `data.mdb is truncated (${size} bytes, shorter than its two meta pages)`;
    const second = Buffer.alloc(256);
    await fh.read(second, 0, second.length, psize);
    if (second.readUInt32LE(m) !== LMDB_MAGIC) return 'data.mdb has a damaged second meta page';
    // LMDB opens the meta page with the higher transaction id; its last page must lie inside the file.
    const metas = [head, second].map((b) => ({ lastPg: b.readBigUInt64LE(m + 120), txnid: b.readBigUInt64LE(m + 128) }));
    const newest = metas[0]!.txnid >= metas[1]!.txnid ? metas[0]! : metas[1]!;
    const needed = (newest.lastPg + 1n) * BigInt(psize);
    if (BigInt(size) < needed) return `data.mdb is truncated (${size} bytes; its header says ${needed})`;
    return undefined;
  } finally {
    await fh.close();
  }
}

// Runs in a child node process: opens the environment and reads every key and value of every named
// database, so every reachable page is touched. Plain JS (no tsx); arguments are the lmdb module URL and
// the directory. Prints the entry counts; a damaged page ends it with an error or a fatal signal.
const VERIFY_SCRIPT = `
const [lmdbUrl, path] = process.argv.slice(1);
const { open } = await import(lmdbUrl);
const root = open({ path, noSubdir: false, maxDbs: 8 });
const counts = {};
for (const name of Array.from(root.getKeys({}), String)) {
  let db;
  try { db = root.openDB({ name, encoding: 'binary', keyEncoding: 'binary' }); } catch { continue; }
  let n = 0, bytes = 0;
  for (const { value } of db.getRange({})) { n++; bytes += value ? value.length : 0; }
  counts[name] = n;
}
await root.close();
process.stdout.write(JSON.stringify(counts));
`;

interface VerifyOutcome {
  readonly ok: boolean;
  /** false when the walk could not run or did not finish: neither proof of damage nor of health */
  readonly conclusive: boolean;
  readonly detail: string;
}

async function verifyInChild(path: string, timeoutMs: number): Promise<VerifyOutcome> {
  const lmdbUrl = import.meta.resolve('lmdb');
  return new Promise((done) => {
    execFile(
      process.execPath,
      ['--input-type=module', '-e', VERIFY_SCRIPT, lmdbUrl, path],
      { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 1 << 20, windowsHide: true },
      (err, stdout, stderr) => {
        if (err === null) return done({ ok: true, conclusive: true, detail: stdout });
        const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: NodeJS.Signals | null; code?: number | string | null };
        if (e.killed === true && e.signal === 'SIGKILL') return done({ ok: false, conclusive: false, detail: `verification did not finish within ${timeoutMs} ms` });
        if (typeof e.code === 'string') return done({ ok: false, conclusive: false, detail: `cannot start the verification process (${e.code})` });
        const firstLine = (text: string): string =>
          text
            .split('\n')
            .map((l) => l.trim())
            .find((l) => /error|MDB_|corrupt|page/i.test(l)) ?? text.trim().split('\n')[0] ?? '';
        const why = e.signal ? `LMDB crashed with ${e.signal} reading it` : `LMDB failed reading it: ${firstLine(stderr).slice(0, 300)}`;
        done({ ok: false, conclusive: true, detail: why });
      },
    );
  });
}

async function prepareDirectory(path: string): Promise<void> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR') throw openError(path, 'the directory cannot be created (ENOTDIR): a component of the path is a file', 'point `[store] path` at a directory path', err);
    if (code !== 'ENOENT') throw openError(path, `cannot stat it (${code ?? causeText(err)})`, 'check the path and the permissions of its parent directories', err);
    try {
      await mkdir(path, { recursive: true, mode: 0o700 });
    } catch (e) {
      const c = (e as NodeJS.ErrnoException).code ?? causeText(e);
      throw openError(path, `the directory does not exist and cannot be created (${c})`, 'create it, writable by the relaygate user, or point `[store] path` elsewhere', e);
    }
    return;
  }
  if (!st.isDirectory()) {
    throw openError(path, 'it is not a directory', '`[store] path` must name a directory (relaygate creates data.mdb and lock.mdb in it); move the file away or choose another path');
  }
  try {
    // LMDB writes lock.mdb and data.mdb here; find out now rather than as a cryptic EACCES from LMDB.
    await access(path, fsConstants.R_OK | fsConstants.W_OK | fsConstants.X_OK);
  } catch (err) {
    const c = (err as NodeJS.ErrnoException).code ?? causeText(err);
    throw openError(path, `the directory is not readable and writable (${c})`, 'make it owned by and writable for the relaygate user (chown/chmod), or point `[store] path` elsewhere', err);
  }
}

// ---------------------------------------------------------------------------------------------------------

/** Opens (creating when new) the LMDB access map in the directory `opts.path`. Throws RG_ERR_STORE_OPEN. */
export async function openLmdbAccessMap(opts: LmdbAccessMapOptions): Promise<LmdbAccessMap> {
  const path = resolve(opts.path);
  const grace = opts.grace ?? DEFAULT_GRACE_SECONDS;
  if (!Number.isFinite(grace) || grace <= 0) throw openError(path, `grace must be a positive number of seconds (got ${grace})`, 'correct `grace` in the configuration');
  await prepareDirectory(path);
  const dataFile = join(path, 'data.mdb');
  let damage: string | undefined;
  try {
    damage = await checkDataFile(dataFile);
  } catch (err) {
    const c = (err as NodeJS.ErrnoException).code ?? causeText(err);
    throw openError(path, `cannot read ${dataFile} (${c})`, 'make it readable and writable by the relaygate user', err);
  }
  if (damage !== undefined) throw openError(path, `${damage}`, MOVE_ASIDE);
  if (opts.verify !== false && (await stat(dataFile).catch(() => undefined)) !== undefined) {
    const v = await verifyInChild(path, opts.verifyTimeoutMs ?? 120_000);
    if (!v.ok && v.conclusive) throw openError(path, `data.mdb is damaged (${v.detail})`, MOVE_ASIDE);
    if (!v.ok) opts.logger.warn({ event: 'store_verify_skipped', path, detail: v.detail }, `access map ${path} not verified: ${v.detail}; opening it anyway`);
  }

  let root: RootDatabase;
  try {
    root = openLmdb({
      path,
      // lmdb-js treats a path with a '.' in its last component as a file name; ours is always a directory.
      noSubdir: false,
      maxDbs: 8,
      ...(opts.mapSize === undefined ? {} : { mapSize: opts.mapSize }),
    });
  } catch (err) {
    throw openError(path, `LMDB refused it (${causeText(err)})`, `check the permissions; if it is corrupt, ${MOVE_ASIDE}`, err);
  }
  try {
    // Named databases are keys of LMDB's main database; nothing is created until the marker checked out,
    // so a refused directory is left exactly as it was found.
    const names = Array.from(root.getKeys({ limit: 64 }), String);
    const marker = names.includes('meta') ? root.openDB<MetaRecord, string>({ name: 'meta', encoding: 'json' }).get('format') : undefined;
    if (marker === undefined) {
      const foreign = names.filter((n) => n !== 'meta');
      if (foreign.length > 0) {
        throw openError(path, `it holds an LMDB database without relaygate's format marker (databases: ${foreign.join(', ')})`, `point \`[store] path\` at an empty or relaygate-owned directory, or ${MOVE_ASIDE}`);
      }
      // New store: the marker goes in before any grant, so a store with grants always has one.
      const meta = root.openDB<MetaRecord, string>({ name: 'meta', encoding: 'json' });
      await root.transaction(() => meta.putSync('format', { format: STORE_FORMAT, version: STORE_FORMAT_VERSION, created: opts.clock() }));
    } else if (typeof marker !== 'object' || marker === null || marker.format !== STORE_FORMAT) {
      throw openError(path, `its format marker is not relaygate's (${shown(JSON.stringify(marker))})`, `point \`[store] path\` at relaygate's own directory, or ${MOVE_ASIDE}`);
    } else if (marker.version !== STORE_FORMAT_VERSION) {
      throw openError(
        path,
        `it was written in access-map format version ${typeof marker.version === 'number' ? marker.version : shown(marker.version)} and this relaygate reads only version ${STORE_FORMAT_VERSION}`,
        `run the relaygate release that wrote it, or ${MOVE_ASIDE}`,
      );
    }
    const grants = root.openDB<Buffer, string>({ name: 'grants', encoding: 'binary' });
    const expiry = root.openDB<Buffer, Buffer>({ name: 'expiry', encoding: 'binary', keyEncoding: 'binary' });
    // Touch both trees now so MDB_CORRUPTED in a root page surfaces here, not at the first SMTP client.
    Array.from(grants.getKeys({ limit: 1 }));
    Array.from(expiry.getKeys({ limit: 1 }));
    const state = root.openDB<unknown, string>({ name: 'state', encoding: 'json' });
    return new LmdbAccessMap(path, root, grants, expiry, state, grace, opts);
  } catch (err) {
    await root.close().catch(() => undefined);
    if (err instanceof RelaygateError) throw err;
    throw openError(path, `LMDB could not read it (${causeText(err)})`, `if it is corrupt, ${MOVE_ASIDE}`, err);
  }
}

/** A login that passed prepareLogin: normalized IP, clamped times, capped texts. */
type Prepared = PreparedLogin;

/** The first `len` bytes of `buf`, as a view kept in `views` (the same object for every call with that length). */
function viewOf(buf: Buffer, views: Buffer[], len: number): Buffer {
  return (views[len] ??= buf.subarray(0, len));
}

/** A conditional write found another state than expected (recordManyIf). */
class StateConflict extends Error {
  constructor(readonly key: string) {
    super(`state ${key} changed`);
  }
}

/** Equality of two JSON values (the state database's encoding), whatever the order of object keys. */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) {
    if (!Object.hasOwn(b, k) || !sameJson((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  }
  return true;
}

export class LmdbAccessMap implements AccessMap {
  readonly path: string;
  /** index entries the last sweep examined: equals the number it found expired (O(expired)); for tests */
  lastSweepExamined = 0;
  /** grace, mynetworks and never_authorize for prepareLogin */
  private readonly rules: LoginRules;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private closed = false;
  private closing: Promise<void> | undefined;
  private counters = { recorded: 0, refused: 0, swept: 0 };
  private lastSweepAt: number | null = null;
  private lastSweepMs: number | null = null;
  /** reused encoding buffers for the writes of recordMany (see encodeScratch) */
  private readonly valueScratch = Buffer.allocUnsafeSlow(MAX_RECORD);
  private readonly keyScratch = Buffer.allocUnsafeSlow(8 + 64);
  /** views of the scratch buffers by length, made once: a subarray per write costs more than the write's encoding */
  private readonly valueViews: Buffer[] = [];
  private readonly keyViews: Buffer[] = [];
  /** the record applyBatch builds, reused */
  private readonly slot: Stored = { expires: 0, lastSeen: 0, firstSeen: 0, count: 0, user: null, service: null, source: '' };

  /** Use openLmdbAccessMap(): the constructor assumes an opened, checked environment. */
  constructor(
    path: string,
    private readonly root: RootDatabase,
    private readonly grants: Database<Buffer, string>,
    private readonly expiry: Database<Buffer, Buffer>,
    private readonly state: Database<unknown, string>,
    grace: number,
    opts: LmdbAccessMapOptions,
  ) {
    this.path = path;
    this.rules = { grace, mynetworks: opts.mynetworks, neverAuthorize: opts.neverAuthorize };
    this.clock = opts.clock;
    this.logger = opts.logger;
  }

  private ioError(op: string, err: unknown): RelaygateError {
    if (err instanceof RelaygateError) return err;
    return new RelaygateError('RG_ERR_STORE_IO', `access map ${this.path}: ${op} failed: ${causeText(err)}`, { cause: err });
  }

  private assertOpen(op: string): void {
    if (this.closed) throw new RelaygateError('RG_ERR_STORE_IO', `access map ${this.path}: ${op} after close`);
  }

  private refuse(login: LoginEvent, reason: RefusalReason, detail: string, level: 'debug' | 'warn'): RecordResult {
    this.counters.refused++;
    this.logger[level]({ event: 'grant_refused', reason, client_ip: login.ip, source: login.source, user: login.user }, `grant not recorded: ${detail}`);
    return { recorded: false, reason, detail };
  }

  /** Validates one login (store/login.ts, shared with the Redis store); a refusal is counted and logged here. */
  private prepare(login: LoginEvent, now: number): Prepared | RecordResult {
    const p = prepareLogin(login, now, this.rules);
    if (isRefusal(p)) return this.refuse(login, p.reason, p.detail, p.level);
    return p;
  }

  /**
   * `cur` after one more login, in place (the ingest path allocates nothing per login). `has`: `cur` holds
   * the IP's current record; false: there is none (or it was unreadable), so the login starts a grant.
   */
  private mergeInto(cur: Stored, has: boolean, p: Prepared, now: number): void {
    const { at } = p;
    // No grant, or an expired one awaiting the sweep: expired = absent, so this starts a new grant.
    if (!has || cur.expires <= now) {
      cur.expires = p.expires;
      cur.lastSeen = at;
      cur.firstSeen = at;
      cur.count = 1;
      cur.user = p.user;
      cur.service = p.service;
      cur.source = p.source;
      return;
    }
    // Sliding expiry. Logins can arrive out of order (a feed catching up, two log files): an older login
    // never shortens the grant nor overwrites who logged in last.
    if (at >= cur.lastSeen) {
      cur.user = p.user;
      cur.service = p.service;
      cur.source = p.source;
      cur.lastSeen = at;
    }
    cur.expires = Math.max(cur.expires, p.expires);
    cur.firstSeen = Math.min(cur.firstSeen, at);
    cur.count = Math.min(cur.count + 1, 0xffffffff);
  }

  /**
   * Inside the batch's write transaction: merges every accepted login into its IP's grant and writes each
   * touched grant once, keeping the expiry index in step. `made` (when given) receives the grant as it
   * stood after each login.
   *
   * Per distinct IP (not per login): one read, one grant put and, when the expiry moved, one index remove +
   * one index put. A batch's logins of one IP are merged in memory in arrival order, which ends in exactly
   * the record and the single index entry that applying them one by one would leave (the intermediate index
   * entries would only be put and removed again inside this same transaction). IPs go in the order of
   * their first login: sorting them by key order measured no faster (the tree of a busy site fits in cache).
   * This is the ingest hot path (bench/ingest.ts): each LMDB call costs ~1 µs here, so nothing is read or
   * written twice, and nothing is allocated per login beyond its result (none without `made`).
   */
  private applyBatch(preps: readonly Prepared[], now: number, made: Grant[] | undefined): void {
    const n = preps.length;
    // The logins of one IP form a chain in arrival order: heads[slot] → next[k] → ... → -1.
    const slotOf = new Map<string, number>();
    const heads: number[] = [];
    const tails: number[] = [];
    const next = new Int32Array(n).fill(-1);
    for (let k = 0; k < n; k++) {
      const ip = preps[k]!.ip;
      const slot = slotOf.get(ip);
      if (slot === undefined) {
        slotOf.set(ip, heads.length);
        heads.push(k);
        tails.push(k);
      } else {
        next[tails[slot]!] = k;
        tails[slot] = k;
      }
    }
    // One record in the making, reused for every IP: each is written before the next is read.
    const cur = this.slot;
    for (const head of heads) {
      const ip = preps[head]!.ip;
      let has = false;
      let indexed: number | undefined;
      // getBinaryFast returns a reused buffer, valid until the next read: decoded at once.
      const raw = this.grants.getBinaryFast(ip);
      if (raw !== undefined) {
        try {
          // The stored user/service/source survive only when the batch's first login of this IP is older
          // than the stored one (a live grant): only then are they decoded.
          const expires = expiresOf(raw);
          decodeGrantInto(raw, cur, expires > now && preps[head]!.at < raw.readDoubleLE(9));
          has = true;
          indexed = expires;
        } catch (err) {
          // An unreadable record is replaced by the new grant; its stale index entry is dropped by the sweep.
          this.logger.warn({ event: 'grant_unreadable', client_ip: ip, err: causeText(err) }, `replacing unreadable grant record for ${ip}`);
        }
      }
      for (let k = head; k !== -1; k = next[k]!) {
        this.mergeInto(cur, has, preps[k]!, now);
        has = true;
        if (made !== undefined) made[k] = toGrant(ip, cur);
      }
      if (indexed !== cur.expires) {
        if (indexed !== undefined) this.expiry.removeSync(this.indexKeyScratch(indexed, ip));
        this.expiry.putSync(this.indexKeyScratch(cur.expires, ip), EMPTY);
      }
      this.grants.putSync(ip, this.encodeScratch(cur));
    }
  }

  /**
   * The record for `g` in a buffer reused for every write. Safe because these writes run inside a write
   * transaction, where lmdb-js's put is synchronous: LMDB copies the value into its page before putSync
   * returns, and nothing keeps the buffer (no async queue, no compression on this database).
   */
  private encodeScratch(g: Stored): Buffer {
    const bound = HEADER + 6 + 3 * ((g.user?.length ?? 0) + (g.service?.length ?? 0) + g.source.length);
    if (bound > this.valueScratch.length) return encodeGrant(g);
    return viewOf(this.valueScratch, this.valueViews, encodeGrantInto(this.valueScratch, g));
  }

  /** indexKey() in a reused buffer: LMDB copies keys (into lmdb-js's instruction buffer) before any use. */
  private indexKeyScratch(expires: number, ip: string): Buffer {
    const key = this.keyScratch;
    key.writeUInt32BE(Math.floor(expires / 0x100000000), 0);
    key.writeUInt32BE(expires >>> 0, 4);
    // normalizeIp output is ASCII (digits, hex, '.', ':'): copied by hand, no native call per key
    const n = ip.length;
    for (let i = 0; i < n; i++) key[8 + i] = ip.charCodeAt(i);
    return viewOf(key, this.keyViews, 8 + n);
  }

  async record(login: LoginEvent): Promise<RecordResult> {
    const [r] = await this.recordMany([login]);
    return r!;
  }

  async getState(key: string): Promise<unknown> {
    this.assertOpen('getState');
    try {
      return this.state.get(key);
    } catch (err) {
      throw this.ioError(`reading state ${key}`, err);
    }
  }

  async setState(key: string, value: unknown): Promise<void> {
    await this.recordMany([], { [key]: value });
  }

  async recordMany(logins: readonly LoginEvent[], state?: Readonly<Record<string, unknown>>): Promise<RecordResult[]> {
    return (await this.write(logins, state, undefined, true)).results!;
  }

  async recordManyIf(logins: readonly LoginEvent[], state: Readonly<Record<string, unknown>>, expect: Readonly<Record<string, unknown>>): Promise<BatchOutcome> {
    const { recorded, refused } = await this.write(logins, state, expect, false);
    return { recorded, refused };
  }

  /**
   * recordMany (`detailed`: a result per login) and recordManyIf (counts only). Everything up to queuing
   * the transaction runs synchronously in the call, so batches commit in the order they were handed over
   * even when several are in flight (a source's pipeline relies on that; lmdb-js runs queued transaction
   * callbacks in order, several in one LMDB transaction when they queue up behind a commit).
   */
  private async write(
    logins: readonly LoginEvent[],
    state: Readonly<Record<string, unknown>> | undefined,
    expect: Readonly<Record<string, unknown>> | undefined,
    detailed: boolean,
  ): Promise<{ results: RecordResult[] | undefined; recorded: number; refused: number }> {
    this.assertOpen('record');
    const now = this.clock();
    const results: RecordResult[] | undefined = detailed ? new Array(logins.length) : undefined;
    const preps: Prepared[] = [];
    const at: number[] = [];
    for (let i = 0; i < logins.length; i++) {
      const p = this.prepare(logins[i]!, now);
      if ('recorded' in p) {
        if (results !== undefined) results[i] = p;
      } else {
        preps.push(p);
        if (results !== undefined) at.push(i);
      }
    }
    const refused = logins.length - preps.length;
    const stateEntries = state === undefined ? [] : Object.entries(state);
    const expected = expect === undefined ? [] : Object.entries(expect);
    if (preps.length > 0 || stateEntries.length > 0 || expected.length > 0) {
      const made: Grant[] | undefined = detailed || this.logger.isLevelEnabled('debug') ? new Array(preps.length) : undefined;
      try {
        // One write transaction for the whole batch: one commit instead of one per login, and the source's
        // position commits with the grants its lines produced (exactly once). A child transaction: when
        // lmdb-js runs several queued batches in one LMDB transaction, a batch that throws (a conflict
        // below, a full map) is rolled back alone and leaves nothing half-written.
        await this.root.childTransaction(() => {
          for (const [k, v] of expected) {
            const cur: unknown = this.state.get(k);
            if (!sameJson(cur, v)) throw new StateConflict(k);
          }
          if (preps.length > 0) this.applyBatch(preps, now, made);
          for (const [k, v] of stateEntries) this.state.putSync(k, v);
        });
      } catch (err) {
        if (err instanceof StateConflict) {
          throw new RelaygateError(
            'RG_ERR_STORE_IO',
            `access map ${this.path}: state ${err.key} is not the one this batch continues from (an earlier batch failed, or another watcher saves the same key); nothing was written and the lines are read again`,
          );
        }
        throw this.ioError(`recording ${preps.length} login(s)`, err);
      }
      this.counters.recorded += preps.length;
      if (made !== undefined) {
        if (results !== undefined) for (let k = 0; k < made.length; k++) results[at[k]!] = { recorded: true, grant: made[k]! };
        if (this.logger.isLevelEnabled('debug')) {
          for (const g of made) this.logger.debug({ event: 'grant', client_ip: g.ip, user: g.user, source: g.source, expires: g.expires, count: g.count }, `grant for ${g.ip} until ${new Date(g.expires).toISOString()}`);
        }
      }
    }
    return { results, recorded: preps.length, refused };
  }

  /** LMDB's id of the last committed write transaction: how many the store has seen (benchmarks, tests). */
  lastTxnId(): number {
    return (this.root.getStats() as { lastTxnId: number }).lastTxnId;
  }

  async lookup(ip: string, now: number = this.clock()): Promise<Grant | undefined> {
    return this.lookupSync(ip, now);
  }

  /** lookup() without the promise: the engine's hot path (an mmap read needs no waiting); throws on a failed read. */
  lookupSync(ip: string, now: number = this.clock()): Grant | undefined {
    this.assertOpen('lookup');
    // Callers pass normalized IPs; normalizing again costs ~100 ns and makes `::ffff:a.b.c.d` find a.b.c.d.
    const key = normalizeIp(ip);
    if (key === undefined) return undefined; // junk can never hold a grant: an answer, not an error
    let raw: Buffer | undefined;
    try {
      // Synchronous on purpose: an mmap read under a read transaction, no syscall and no writer lock.
      // getBinaryFast returns a reused buffer, valid until the next read, so it is decoded at once.
      raw = this.grants.getBinaryFast(key);
      if (raw === undefined) return undefined;
      // Expired = absent right away, before any sweep; only the expiry is read for those.
      if (expiresOf(raw) <= now) return undefined;
      return toGrant(key, decodeGrant(raw));
    } catch (err) {
      // Never "no grant" on a failed read: the engine turns this into 451 4.3.0.
      throw this.ioError(`lookup of ${key}`, err);
    }
  }

  async delete(ip: string): Promise<boolean> {
    this.assertOpen('delete');
    const key = normalizeIp(ip);
    if (key === undefined) return false;
    const now = this.clock();
    try {
      return await this.root.transaction(() => {
        const raw = this.grants.getBinaryFast(key);
        if (raw === undefined) return false;
        let expires: number | undefined;
        try {
          expires = expiresOf(raw);
        } catch {
          expires = undefined; // unreadable: remove the grant anyway; the sweep drops its index entry
        }
        this.grants.removeSync(key);
        if (expires !== undefined) this.expiry.removeSync(indexKey(expires, key));
        // An expired grant awaiting the sweep is removed too, but it was already absent to everyone.
        return expires === undefined || expires > now;
      });
    } catch (err) {
      throw this.ioError(`delete of ${key}`, err);
    }
  }

  async list(now: number = this.clock()): Promise<Grant[]> {
    this.assertOpen('list');
    const out: Grant[] = [];
    try {
      // LMDB key order is the order of the IP strings (ASCII, ordered-binary), so no sort is needed.
      for (const { key, value } of this.grants.getRange({})) {
        if (expiresOf(value) <= now) continue;
        out.push(toGrant(key, decodeGrant(value)));
      }
    } catch (err) {
      throw this.ioError('list', err);
    }
    return out;
  }

  async sweep(now: number = this.clock()): Promise<number> {
    this.assertOpen('sweep');
    const started = performance.now();
    const end = expiredEnd(now);
    let swept = 0;
    let examined = 0;
    for (;;) {
      if (this.closed) break;
      let chunk: { examined: number; removed: number; more: boolean };
      try {
        // The range is read inside the write transaction, so it sees every earlier commit and a record that
        // slid a grant's expiry meanwhile is respected (its old index entry is already gone).
        chunk = await this.root.transaction(() => {
          const sliceEnd = performance.now() + SWEEP_SLICE_MS;
          const keys = Array.from(this.expiry.getKeys({ end, limit: SWEEP_CHUNK }));
          let removed = 0;
          let done = 0;
          for (const k of keys) {
            // Keys left over when the time slice is used up are read again by the next chunk.
            if ((done & 127) === 127 && performance.now() > sliceEnd) break;
            done++;
            const ip = indexKeyIp(k);
            const exp = indexKeyExpires(k);
            const raw = this.grants.getBinaryFast(ip);
            let matches = false;
            if (raw !== undefined) {
              try {
                matches = expiresOf(raw) === exp;
              } catch {
                matches = true; // an unreadable grant whose index entry has expired goes too
              }
            }
            if (matches) {
              this.grants.removeSync(ip);
              removed++;
            }
            this.expiry.removeSync(k);
          }
          return { examined: done, removed, more: keys.length === SWEEP_CHUNK || done < keys.length };
        });
      } catch (err) {
        throw this.ioError('sweep', err);
      }
      swept += chunk.removed;
      examined += chunk.examined;
      if (!chunk.more) break;
    }
    this.counters.swept += swept;
    this.lastSweepExamined = examined;
    this.lastSweepAt = now;
    this.lastSweepMs = Math.round((performance.now() - started) * 1000) / 1000;
    return swept;
  }

  /**
   * `active` costs O(expired), not O(grants): the grant count comes from LMDB's own B-tree statistics
   * (O(1)), minus the expiry-index entries at or before `now`, which are counted by a cursor over just
   * that range. Between sweeps that range is small; right before sweeping 1M expired grants it is a count
   * of 1M keys (~0.1 s), still without decoding a single grant.
   */
  async stats(now: number = this.clock()): Promise<MapStats> {
    this.assertOpen('stats');
    try {
      const total = (this.grants.getStats() as { entryCount: number }).entryCount;
      const end = expiredEnd(now);
      const expiredPending = this.expiry.getKeysCount({ end });
      const [oldest] = Array.from(this.expiry.getKeys({ start: end, limit: 1 }));
      const [newest] = Array.from(this.expiry.getKeys({ reverse: true, limit: 1 }));
      const newestExpiry = newest === undefined ? null : indexKeyExpires(newest);
      return {
        active: Math.max(0, total - expiredPending),
        expiredPending,
        oldestExpiry: oldest === undefined ? null : indexKeyExpires(oldest),
        newestExpiry: newestExpiry !== null && newestExpiry > now ? newestExpiry : null,
        recorded: this.counters.recorded,
        refused: this.counters.refused,
        swept: this.counters.swept,
        lastSweepAt: this.lastSweepAt,
        lastSweepMs: this.lastSweepMs,
        backend: `lmdb:${this.path}`,
      };
    } catch (err) {
      throw this.ioError('stats', err);
    }
  }

  /** Waits for pending writes, then closes the environment; later calls throw RG_ERR_STORE_IO. */
  async close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    this.closing = this.root.close().catch((err: unknown) => {
      throw this.ioError('close', err);
    });
    return this.closing;
  }
}
