// The access map on Redis (node-redis): grants shared by several SMTP nodes.
//
// Layout (every key starts with `key_prefix`, default "relaygate:"):
//   <prefix>format        "relaygate-access-map:1": refuse a keyspace written in a layout we do not know
//   <prefix>grant:<ip>    the grant record (JSON array, below) with a PX expiry at the grant's own expiry, so
//                         Redis forgets an expired grant by itself even if no relaygate node sweeps
//   <prefix>expiry        sorted set: member ip, score = the grant's expiry (ms). The index for list(),
//                         stats() and sweep() (ZRANGEBYSCORE/ZCOUNT): exactly one entry per IP, moved by
//                         every write in the same script. Entries whose key Redis already expired are pruned
//                         by sweep(), so the sweeper keeps the index as small as the set of live grants.
//   <prefix>state:<node>  hash: a source's position (file offset, journald cursor) as JSON, per node, because
//                         each SMTP node tails its own logs: two nodes must not overwrite each other's offsets
//
// Record: [1, expires, lastSeen, firstSeen, count, user|null, service|null, source], times in ms. The merge
// of a login into a grant (sliding expiry; an out-of-order login never shortens a grant nor replaces the
// newer user; a login without a user clears it; count; firstSeen) is the LMDB store's merge, written once
// more in Lua (RECORD_SCRIPT), because it must run inside Redis: two nodes recording the same IP at the same
// moment each run their read-merge-write as one script, which Redis executes atomically, so neither update
// is lost. A batch is one script call (one round trip), with the source's state written in the same script.
// Time comes from the calling node's clock (`now` is an argument), never from Redis: expiry checks and
// tests use the same clock as the LMDB store, and PX is relative, so a skewed Redis clock changes nothing.
//
// Failure: every operation has a deadline (`timeoutMs`). node-redis's own command timeout stops at the
// write (a command already sent to a Redis that hangs waits forever), so each call races a timer here.
// Commands are never queued while disconnected (disableOfflineQueue), reconnects back off to at most 2 s
// and never give up, a PING every second plus a socket idle timeout notices a dead peer. Any failure is
// RG_ERR_STORE_IO: the engine answers it 451 4.3.0 (never a permit) and sources retry their batch.
//
// Cluster: a script may only touch keys of one hash slot, so in cluster mode the prefix must carry a hash
// tag ("{relaygate}:"), which puts all of relaygate's keys on one shard (the map is small; the cluster then
// gives failover, not sharding). Sentinel: node-redis follows the master the sentinels name.
//
// Security: everyone who can write to this Redis can grant relaying, so config validation refuses a
// non-loopback Redis without a password. Records read from Redis are not trusted to be well-formed (another
// program, or an attacker with partial access, may have written the key): an unreadable record is never a
// grant — lookups fail temporary and say so, merges replace it, sweeps drop it. Logins are checked by
// store/login.ts (the same rules as LMDB) before they reach Redis. The URL's password never reaches a log.

import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { normalizeIp, type CidrSet } from '../net/index.ts';
import { RelaygateError } from '../errors.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log/logger.ts';
import type { AccessMap, Grant, LoginEvent, MapStats, RecordResult, RefusalReason } from './types.ts';
import { prepareLogin, isRefusal, type LoginRules, type PreparedLogin } from './login.ts';

export const REDIS_FORMAT = 'relaygate-access-map:1';
export const DEFAULT_KEY_PREFIX = 'relaygate:';
export const DEFAULT_REDIS_TIMEOUT_MS = 1000;
/** index entries one sweep script examines (a script blocks Redis while it runs: ~1 ms per 1000 here) */
export const REDIS_SWEEP_CHUNK = 1000;
/** logins per record script: a larger batch is split, its state goes with the last part */
export const REDIS_RECORD_CHUNK = 5000;
const LIST_CHUNK = 1000;

export interface RedisAccessMapOptions {
  /** redis://[user:password@]host:port[/db] or rediss:// (TLS); in cluster / sentinel mode: one seed node */
  readonly url: string;
  readonly keyPrefix?: string;
  /** deadline of every store operation, ms (default 1000); also the connect timeout */
  readonly timeoutMs?: number;
  /** names this node's source positions (default: the host name) */
  readonly nodeName?: string;
  /** Redis Cluster: url and `nodes` are seed nodes */
  readonly cluster?: boolean;
  /** Redis Sentinel: the master's name; url and `nodes` are sentinels, url's credentials are the master's */
  readonly sentinelMaster?: string;
  /** more seed nodes / sentinels ("host:port" or redis:// URLs) */
  readonly nodes?: readonly string[];
  /** `[store.redis]`: passed through to createClient / createCluster / createSentinel (deep-merged) */
  readonly clientOptions?: Readonly<Record<string, unknown>>;
  /** how long start-up waits for a first connection (default max(timeoutMs, 5 s)); tests shorten it */
  readonly openTimeoutMs?: number;
  /** default grant lifetime in seconds */
  readonly grace?: number;
  readonly mynetworks: CidrSet;
  readonly neverAuthorize: CidrSet;
  readonly clock: Clock;
  readonly logger: Logger;
}

// ---------------------------------------------------------------------------------------------------------
// Lua. Shared helpers: dec() validates a stored record (nil when unreadable), enc() writes one. Numbers are
// formatted with %.0f: tostring() would switch to exponent notation above 1e14.

const LUA_LIB = `
local function num(n) return string.format('%.0f', n) end
local function txt(x) if x == false then return 'null' end return cjson.encode(x) end
local function enc(g)
  return '[1,' .. num(g.e) .. ',' .. num(g.l) .. ',' .. num(g.f) .. ',' .. num(g.c) .. ',' .. txt(g.u) .. ',' .. txt(g.s) .. ',' .. cjson.encode(g.src) .. ']'
end
local function int(x, lo, hi)
  return type(x) == 'number' and x == math.floor(x) and x >= lo and x <= hi
end
local function opt(x)
  if x == cjson.null then return false end
  if type(x) == 'string' then return x end
  return nil
end
local function dec(raw)
  if type(raw) ~= 'string' then return nil end
  local ok, v = pcall(cjson.decode, raw)
  if not ok or type(v) ~= 'table' or v[1] ~= 1 then return nil end
  local e, l, f, c = v[2], v[3], v[4], v[5]
  if not int(e, 0, 9007199254740991) or not int(l, 0, 9007199254740991) or not int(f, 0, 9007199254740991) or not int(c, 1, 4294967295) then return nil end
  local u, s, src = opt(v[6]), opt(v[7]), v[8]
  if u == nil or s == nil or type(src) ~= 'string' then return nil end
  return { e = e, l = l, f = f, c = c, u = u, s = s, src = src }
end
`;

/**
 * KEYS: index, state hash, then one grant key per distinct IP. ARGV: now, nips, ips..., nlog, then per login
 * (slot, at, expires, user, service, source) with '' for a null user/service, then nstate, (field, json)...
 * Returns { records after each login, IPs whose stored record was unreadable }.
 */
const RECORD_SCRIPT = `${LUA_LIB}
local now = tonumber(ARGV[1])
local nips = tonumber(ARGV[2])
local cur, loaded, last, bad, out = {}, {}, {}, {}, {}
local p = 3 + nips
local nlog = tonumber(ARGV[p]); p = p + 1
for i = 1, nlog do
  local k, at, exp = tonumber(ARGV[p]), tonumber(ARGV[p + 1]), tonumber(ARGV[p + 2])
  local u, s, src = ARGV[p + 3], ARGV[p + 4], ARGV[p + 5]
  p = p + 6
  if u == '' then u = false end
  if s == '' then s = false end
  if not loaded[k] then
    loaded[k] = true
    local raw = redis.call('GET', KEYS[2 + k])
    if raw then
      cur[k] = dec(raw)
      if cur[k] == nil then bad[#bad + 1] = ARGV[2 + k] end
    end
  end
  local o = cur[k]
  local g
  if o == nil or o.e <= now then
    g = { e = exp, l = at, f = at, c = 1, u = u, s = s, src = src }
  else
    g = { e = math.max(o.e, exp), l = math.max(o.l, at), f = math.min(o.f, at), c = math.min(o.c + 1, 4294967295) }
    if at >= o.l then g.u, g.s, g.src = u, s, src else g.u, g.s, g.src = o.u, o.s, o.src end
  end
  cur[k] = g
  last[k] = enc(g)
  out[i] = last[k]
end
for k = 1, nips do
  local g = cur[k]
  if g ~= nil and last[k] ~= nil then
    redis.call('SET', KEYS[2 + k], last[k], 'PX', num(g.e - now))
    redis.call('ZADD', KEYS[1], num(g.e), ARGV[2 + k])
  end
end
local nst = tonumber(ARGV[p]); p = p + 1
for i = 1, nst do
  if ARGV[p + 1] == '' then redis.call('HDEL', KEYS[2], ARGV[p]) else redis.call('HSET', KEYS[2], ARGV[p], ARGV[p + 1]) end
  p = p + 2
end
return { out, bad }
`;

/** KEYS: index, grant key. ARGV: now, ip. 1 when an unexpired (or unreadable) grant was removed. */
const DELETE_SCRIPT = `${LUA_LIB}
local raw = redis.call('GET', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[2])
if not raw then return 0 end
redis.call('DEL', KEYS[2])
local g = dec(raw)
if g == nil or g.e > tonumber(ARGV[1]) then return 1 end
return 0
`;

/**
 * KEYS: index. ARGV: now, limit, grant key prefix. Removes up to `limit` index entries expired at `now`
 * with their grants (a grant Redis already expired by PX counts too). Returns { examined, removed }.
 * Grant keys are built here from the prefix (declared keys would cost a round trip first); in a cluster
 * the prefix's hash tag keeps them in the index's slot.
 */
const SWEEP_SCRIPT = `${LUA_LIB}
local now = tonumber(ARGV[1])
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local examined, removed = 0, 0
for i = 1, #items, 2 do
  local ip = items[i]
  examined = examined + 1
  local key = ARGV[3] .. ip
  local raw = redis.call('GET', key)
  local g = nil
  if raw then g = dec(raw) end
  if g ~= nil and g.e > now then
    redis.call('ZADD', KEYS[1], num(g.e), ip)
  else
    if raw then redis.call('DEL', key) end
    redis.call('ZREM', KEYS[1], ip)
    removed = removed + 1
  end
end
return { examined, removed }
`;

/** KEYS: index. ARGV: now. Returns { active, expiredPending, oldest unexpired expiry, newest expiry }. */
const STATS_SCRIPT = `
local active = redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[1], '+inf')
local pending = redis.call('ZCOUNT', KEYS[1], '-inf', ARGV[1])
local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
return { active, pending, oldest[2] or false, newest[2] or false }
`;

/** KEYS: index. ARGV: now, offset, count, grant key prefix. Returns { ip, record or false, ... } of unexpired entries. */
const LIST_SCRIPT = `
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'LIMIT', tonumber(ARGV[2]), tonumber(ARGV[3]))
local out = {}
for i = 1, #items do
  out[2 * i - 1] = items[i]
  out[2 * i] = redis.call('GET', ARGV[4] .. items[i])
end
return out
`;

/** KEYS: format key. ARGV: our format. Writes the marker into an empty keyspace; returns the marker found. */
const FORMAT_SCRIPT = `
local v = redis.call('GET', KEYS[1])
if v then return v end
if redis.call('EXISTS', KEYS[2]) == 1 then return '' end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
`;

interface Script {
  readonly text: string;
  readonly sha: string;
}

function script(text: string): Script {
  return { text, sha: createHash('sha1').update(text).digest('hex') };
}

const SCRIPTS = {
  record: script(RECORD_SCRIPT),
  delete: script(DELETE_SCRIPT),
  sweep: script(SWEEP_SCRIPT),
  stats: script(STATS_SCRIPT),
  list: script(LIST_SCRIPT),
  format: script(FORMAT_SCRIPT),
} as const;

// ---------------------------------------------------------------------------------------------------------
// Records

interface Stored {
  readonly expires: number;
  readonly lastSeen: number;
  readonly firstSeen: number;
  readonly count: number;
  readonly user: string | null;
  readonly service: string | null;
  readonly source: string;
}

/** Parses a stored record; throws (with a short reason) when it is not one this code wrote. */
export function decodeRedisGrant(raw: unknown): Stored {
  if (typeof raw !== 'string') throw new Error(`grant record is not a string (${raw === null ? 'null' : typeof raw})`);
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw new Error(`grant record is not JSON (${raw.length} bytes)`);
  }
  if (!Array.isArray(v) || v.length !== 8 || v[0] !== 1) throw new Error('grant record has an unknown shape');
  const [, expires, lastSeen, firstSeen, count, user, service, source] = v as unknown[];
  // The bounds the Lua side checks too (dec): a record outside them is unreadable on both sides.
  const time = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
  if (!time(expires) || !time(lastSeen) || !time(firstSeen) || !time(count) || count < 1 || count > 0xffffffff) throw new Error('grant record has invalid numbers');
  const text = (x: unknown): x is string | null => x === null || typeof x === 'string';
  if (!text(user) || !text(service) || typeof source !== 'string') throw new Error('grant record has invalid texts');
  return { expires, lastSeen, firstSeen, count, user, service, source };
}

function toGrant(ip: string, s: Stored): Grant {
  return { ip, user: s.user, service: s.service, source: s.source, firstSeen: s.firstSeen, lastSeen: s.lastSeen, expires: s.expires, count: s.count };
}

function causeText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The URL with its password replaced by ***, for logs, errors and `map stats` (the username stays). */
export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return '(unparsable url)';
  }
}

/** Loopback: 127.0.0.0/8, ::1 and the name localhost (resolved by the hosts file, not DNS). */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  if (bare.toLowerCase() === 'localhost') return true;
  const ip = normalizeIp(bare);
  return ip !== undefined && (ip === '::1' || /^127\./.test(ip));
}

function byIp(a: Grant, b: Grant): number {
  return a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------------------
// Connection: one small interface over node-redis's client, cluster and sentinel objects

interface Link {
  /** sends one command; `firstKey` routes it in a cluster */
  send(firstKey: string, readonly: boolean, args: string[]): Promise<unknown>;
  /** true for an error reply from Redis (a script error, NOSCRIPT, WRONGTYPE): an answer, not an outage */
  isReply(err: unknown): boolean;
  connect(): Promise<unknown>;
  close(): Promise<void>;
  destroy(): void;
}

interface NodeRedisLike {
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  connect(): Promise<unknown>;
  close(): Promise<void>;
  destroy(): void | Promise<void>;
}

type Plain = Record<string, unknown>;

function isPlain(v: unknown): v is Plain {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * b over a, recursively for plain objects (TOML tables); arrays and scalars replace. Tables of b are copied,
 * never shared: the configuration is frozen, and node-redis may write into the options it is given.
 */
export function deepMerge(a: Plain, b: Plain): Plain {
  const out: Plain = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = isPlain(v) ? deepMerge(isPlain(out[k]) ? out[k] : {}, v) : Array.isArray(v) ? [...(v as unknown[])] : v;
  return out;
}

/** "host:port" or a redis:// URL → { host, port } (sentinel root nodes). */
export function parseNode(text: string, defaultPort: number): { host: string; port: number } {
  const u = new URL(/^[a-z]+:\/\//i.test(text) ? text : `redis://${text}`);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  return { host, port: u.port === '' ? defaultPort : Number(u.port) };
}

/** What the client options need from the URL when node-redis is not given the URL itself (sentinel). */
function urlCredentials(url: URL): Plain {
  const out: Plain = {};
  if (url.username !== '') out.username = decodeURIComponent(url.username);
  if (url.password !== '') out.password = decodeURIComponent(url.password);
  const db = url.pathname.replace(/^\//, '');
  if (db !== '') out.database = Number(db);
  if (url.protocol === 'rediss:') out.socket = { tls: true };
  return out;
}

async function connectLink(opts: RedisAccessMapOptions, timeoutMs: number, onError: (err: unknown) => void): Promise<Link> {
  let opening = true;
  let lastError: unknown;
  let refused: ((err: unknown) => void) | undefined;
  const redis = await import('redis');
  const url = new URL(opts.url);
  const pass = deepMerge({}, opts.clientOptions ?? {});
  // Our defaults: never queue while offline, reconnect forever with a bounded back-off, notice dead peers.
  const clientBase: Plain = {
    disableOfflineQueue: true,
    pingInterval: 1000,
    commandOptions: { timeout: timeoutMs },
    socket: {
      connectTimeout: timeoutMs,
      socketTimeout: 1000 + 2 * timeoutMs,
      reconnectStrategy: (retries: number) => Math.min(50 * 2 ** Math.min(retries, 10), 2000) + Math.floor(Math.random() * 50),
    },
  };
  let obj: NodeRedisLike;
  let send: Link['send'];
  if (opts.cluster === true) {
    const rootNodes = [opts.url, ...(opts.nodes ?? [])].map((n) => ({ url: /^[a-z]+:\/\//i.test(n) ? n : `${url.protocol}//${n}` }));
    const { defaults, ...rest } = pass;
    const { database: _db0, ...credentials } = urlCredentials(url); // a cluster has database 0 only (validated)
    const options = { ...rest, rootNodes, defaults: deepMerge(deepMerge(clientBase, credentials), isPlain(defaults) ? defaults : {}) };
    const c = redis.createCluster(options as unknown as Parameters<typeof redis.createCluster>[0]);
    obj = c as unknown as NodeRedisLike;
    send = (firstKey, ro, args) => c.sendCommand(firstKey, ro, args);
  } else if (opts.sentinelMaster !== undefined) {
    const sentinelRootNodes = [opts.url, ...(opts.nodes ?? [])].map((n) => parseNode(n, 26379));
    const { nodeClientOptions, sentinelClientOptions, ...rest } = pass;
    const nodeBase = deepMerge(clientBase, urlCredentials(url));
    const options = {
      ...rest,
      name: opts.sentinelMaster,
      sentinelRootNodes,
      nodeClientOptions: deepMerge(nodeBase, isPlain(nodeClientOptions) ? nodeClientOptions : {}),
      sentinelClientOptions: deepMerge({ socket: clientBase.socket }, isPlain(sentinelClientOptions) ? sentinelClientOptions : {}),
    };
    const s = redis.createSentinel(options as unknown as Parameters<typeof redis.createSentinel>[0]);
    obj = s as unknown as NodeRedisLike;
    send = (_firstKey, ro, args) => s.sendCommand(ro, args);
  } else {
    const options = { ...deepMerge(clientBase, pass), url: opts.url, disableOfflineQueue: true };
    const c = redis.createClient(options as unknown as Parameters<typeof redis.createClient>[0]);
    obj = c as unknown as NodeRedisLike;
    send = (_firstKey, _ro, args) => c.sendCommand(args);
  }
  // node-redis emits 'error' for every failed (re)connect; without a listener that would end the process.
  // While opening, a refused connection is retried until the deadline (Redis may be starting), but an error
  // reply (WRONGPASS, NOAUTH, an invalid database) is a configuration mistake: fail at once, with its text.
  obj.on('error', (err: unknown) => {
    if (!opening) return onError(err);
    lastError = err;
    if (err instanceof redis.ErrorReply) refused?.(err);
  });
  const link: Link = {
    send,
    isReply: (err) => err instanceof redis.ErrorReply,
    connect: () => obj.connect(),
    close: () => obj.close(),
    destroy: () => {
      try {
        void Promise.resolve(obj.destroy()).catch(() => undefined);
      } catch {
        // already closed
      }
    },
  };
  // connect() retries by itself until Redis answers; at start-up we wait a bounded time, then give up.
  let timer: NodeJS.Timeout | undefined;
  const connecting = link.connect();
  const waitMs = opts.openTimeoutMs ?? Math.max(timeoutMs, 5000);
  try {
    await Promise.race([
      connecting,
      new Promise((_, reject) => {
        refused = reject;
        timer = setTimeout(() => reject(new Error(`no connection within ${waitMs} ms${lastError === undefined ? '' : `; last error: ${causeText(lastError)}`}`)), waitMs);
      }),
    ]);
  } catch (err) {
    connecting.catch(() => undefined);
    link.destroy();
    throw err;
  } finally {
    clearTimeout(timer);
    opening = false;
  }
  return link;
}

// ---------------------------------------------------------------------------------------------------------

/** Connects, checks (or writes) the format marker, and returns the map. Throws RG_ERR_STORE_OPEN. */
export async function openRedisAccessMap(opts: RedisAccessMapOptions): Promise<RedisAccessMap> {
  const shownUrl = redactRedisUrl(opts.url);
  const fail = (problem: string, fix: string, cause?: unknown) =>
    new RelaygateError('RG_ERR_STORE_OPEN', `cannot open access map ${shownUrl}: ${problem}; ${fix}`, cause === undefined ? undefined : { cause });
  const grace = opts.grace ?? 1800;
  if (!Number.isFinite(grace) || grace <= 0) throw fail(`grace must be a positive number of seconds (got ${grace})`, 'correct `grace` in the configuration');
  try {
    const u = new URL(opts.url);
    if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new Error(`scheme ${u.protocol}`);
  } catch (err) {
    throw fail(`not a redis:// or rediss:// URL (${causeText(err)})`, 'set `[store] url = "redis://host:port"`', err);
  }
  const timeoutMs = opts.timeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS;
  const parsed = new URL(opts.url);
  if (parsed.protocol === 'redis:' && !isLoopbackHost(parsed.hostname)) {
    opts.logger.warn(
      { event: 'store_plaintext', store: shownUrl },
      `access map ${shownUrl}: the Redis password and every grant cross the network in clear text; use rediss:// (TLS) unless this network is trusted`,
    );
  }
  const map = new RedisAccessMap(opts, shownUrl, timeoutMs, grace);
  try {
    map.attach(await connectLink(opts, timeoutMs, (err) => map.linkError(err)));
  } catch (err) {
    const why = causeText(err);
    if (/NOAUTH|WRONGPASS|NOPERM|invalid password|AUTH/i.test(why)) throw fail(`Redis refused the login (${why})`, 'put the right password in `[store] url` (redis://:PASSWORD@host:port, or redis://USER:PASSWORD@host:port for an ACL user)', err);
    if (/ErrorReply|^ERR /.test(why) || (err instanceof Error && err.constructor.name === 'ErrorReply')) throw fail(`Redis refused the connection (${why})`, 'check `[store] url` (database number) and that the server is Redis 6 or later', err);
    throw fail(`Redis did not answer (${why})`, 'start Redis or correct `[store] url` (host, port); relaygate connects at start-up and reconnects by itself later', err);
  }
  try {
    await map.checkFormat();
  } catch (err) {
    await map.close().catch(() => undefined);
    if (err instanceof RelaygateError && err.code === 'RG_ERR_STORE_OPEN') throw err;
    const why = causeText(err);
    const fix = /NOAUTH|WRONGPASS|NOPERM/i.test(why)
      ? 'put the right password in `[store] url` (redis://:PASSWORD@host:port) or grant the ACL user the commands GET, SET, DEL, ZADD, ZREM, ZRANGE, ZRANGEBYSCORE, ZCOUNT, HGET, HSET, HDEL, EXISTS, EVAL, EVALSHA'
      : 'check that the server is Redis ≥ 6 with Lua scripting enabled and reachable';
    throw fail(`the first command failed (${why})`, fix, err);
  }
  return map;
}

export class RedisAccessMap implements AccessMap {
  /** the URL without its password */
  readonly url: string;
  /** index entries the last sweep examined (expired ones, O(expired)); for tests */
  lastSweepExamined = 0;
  private link: Link | undefined;
  private readonly rules: LoginRules;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly timeoutMs: number;
  private readonly keys: { readonly format: string; readonly index: string; readonly state: string; readonly grant: string };
  private closed = false;
  private closing: Promise<void> | undefined;
  /** false between the first failure and the next success: one warning per outage, not one per command */
  private healthy = true;
  private counters = { recorded: 0, refused: 0, swept: 0 };
  private lastSweepAt: number | null = null;
  private lastSweepMs: number | null = null;

  /** Use openRedisAccessMap(). */
  constructor(opts: RedisAccessMapOptions, url: string, timeoutMs: number, grace: number) {
    this.url = url;
    this.timeoutMs = timeoutMs;
    this.rules = { grace, mynetworks: opts.mynetworks, neverAuthorize: opts.neverAuthorize };
    this.clock = opts.clock;
    this.logger = opts.logger;
    const prefix = opts.keyPrefix ?? DEFAULT_KEY_PREFIX;
    this.keys = { format: `${prefix}format`, index: `${prefix}expiry`, state: `${prefix}state:${opts.nodeName ?? hostname()}`, grant: `${prefix}grant:` };
  }

  /** @internal */
  attach(link: Link): void {
    this.link = link;
  }

  /** @internal node-redis 'error' events: reconnect attempts; logged once per outage. */
  linkError(err: unknown): void {
    this.markDown('connection', err);
  }

  private markDown(op: string, err: unknown): void {
    if (this.closed) return;
    if (this.healthy) {
      this.healthy = false;
      this.logger.warn({ event: 'store_unavailable', store: this.url, op, err: causeText(err) }, `Redis access map ${this.url} unavailable (${op}: ${causeText(err)}); lookups answer 451 4.3.0 and sources retry until it is back`);
    } else {
      this.logger.debug({ event: 'store_error', store: this.url, op, err: causeText(err) }, `Redis access map ${this.url}: ${op}: ${causeText(err)}`);
    }
  }

  private markUp(): void {
    if (this.healthy) return;
    this.healthy = true;
    this.logger.info({ event: 'store_available', store: this.url }, `Redis access map ${this.url} answers again`);
  }

  private ioError(op: string, err: unknown): RelaygateError {
    if (err instanceof RelaygateError) return err;
    return new RelaygateError('RG_ERR_STORE_IO', `access map ${this.url}: ${op} failed: ${causeText(err)}`, { cause: err });
  }

  private assertOpen(op: string): Link {
    if (this.closed || this.link === undefined) throw new RelaygateError('RG_ERR_STORE_IO', `access map ${this.url}: ${op} after close`);
    return this.link;
  }

  /** One command with the deadline; any failure becomes RG_ERR_STORE_IO. */
  private async call(op: string, firstKey: string, readonly: boolean, args: string[]): Promise<unknown> {
    const link = this.assertOpen(op);
    let timer: NodeJS.Timeout | undefined;
    try {
      const reply = await Promise.race([
        link.send(firstKey, readonly, args),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer from Redis within ${this.timeoutMs} ms`)), this.timeoutMs);
        }),
      ]);
      this.markUp();
      return reply;
    } catch (err) {
      // A Redis error reply (a script error, WRONGTYPE) is not an outage, but it fails the operation the same way.
      if (!link.isReply(err)) this.markDown(op, err);
      throw this.ioError(op, err);
    } finally {
      clearTimeout(timer);
    }
  }

  /** EVALSHA, falling back to EVAL once when Redis does not have the script (first use, or after a restart). */
  private async run(op: string, s: Script, keys: string[], args: string[], readonly = false): Promise<unknown> {
    const tail = [String(keys.length), ...keys, ...args];
    try {
      return await this.call(op, keys[0]!, readonly, ['EVALSHA', s.sha, ...tail]);
    } catch (err) {
      if (!(err instanceof RelaygateError) || !/NOSCRIPT/.test(causeText(err.cause))) throw err;
      return this.call(op, keys[0]!, readonly, ['EVAL', s.text, ...tail]);
    }
  }

  /** @internal Writes the format marker into a new keyspace; refuses a foreign one. */
  async checkFormat(): Promise<void> {
    const found = await this.run('format check', SCRIPTS.format, [this.keys.format, this.keys.index], [REDIS_FORMAT]);
    if (found === REDIS_FORMAT) return;
    const what = found === '' ? `${this.keys.index} exists without relaygate's format marker ${this.keys.format}` : `its format marker ${this.keys.format} is ${JSON.stringify(String(found).slice(0, 64))}, not ${JSON.stringify(REDIS_FORMAT)}`;
    await this.close().catch(() => undefined);
    throw new RelaygateError(
      'RG_ERR_STORE_OPEN',
      `cannot open access map ${this.url}: ${what}; point \`[store] key_prefix\` at keys relaygate owns, or run the relaygate release that wrote them`,
    );
  }

  private refuse(login: LoginEvent, reason: RefusalReason, detail: string, level: 'debug' | 'warn'): RecordResult {
    this.counters.refused++;
    this.logger[level]({ event: 'grant_refused', reason, client_ip: login.ip, source: login.source, user: login.user }, `grant not recorded: ${detail}`);
    return { recorded: false, reason, detail };
  }

  async record(login: LoginEvent): Promise<RecordResult> {
    const [r] = await this.recordMany([login]);
    return r!;
  }

  async getState(key: string): Promise<unknown> {
    const raw = await this.call(`reading state ${key}`, this.keys.state, true, ['HGET', this.keys.state, key]);
    if (raw === null || raw === undefined) return undefined;
    try {
      return JSON.parse(String(raw)) as unknown;
    } catch (err) {
      throw new RelaygateError(
        'RG_ERR_STORE_IO',
        `access map ${this.url}: state ${key} in ${this.keys.state} is not JSON; remove it (redis-cli HDEL ${this.keys.state} ${key}) and the source starts over from its start_at`,
        { cause: err },
      );
    }
  }

  async setState(key: string, value: unknown): Promise<void> {
    await this.recordMany([], { [key]: value });
  }

  async recordMany(logins: readonly LoginEvent[], state?: Readonly<Record<string, unknown>>): Promise<RecordResult[]> {
    this.assertOpen('record');
    const now = this.clock();
    const results: RecordResult[] = new Array(logins.length);
    const preps: PreparedLogin[] = [];
    const at: number[] = [];
    for (let i = 0; i < logins.length; i++) {
      const p = prepareLogin(logins[i]!, now, this.rules);
      if (isRefusal(p)) results[i] = this.refuse(logins[i]!, p.reason, p.detail, p.level);
      else {
        preps.push(p);
        at.push(i);
      }
    }
    const stateArgs: string[] = [];
    for (const [k, v] of Object.entries(state ?? {})) stateArgs.push(k, v === undefined ? '' : JSON.stringify(v));
    if (preps.length === 0 && stateArgs.length === 0) return results;
    // Normally one script call; a huge batch (a tailer catching up) is cut so no single script holds Redis
    // for long. The state goes with the last part: a failure before it leaves the position where it was,
    // and the retried batch only refreshes the grants the first parts already wrote.
    for (let start = 0; start === 0 || start < preps.length; start += REDIS_RECORD_CHUNK) {
      const part = preps.slice(start, start + REDIS_RECORD_CHUNK);
      const lastPart = start + REDIS_RECORD_CHUNK >= preps.length;
      const grants = await this.recordPart(part, lastPart ? stateArgs : [], now);
      for (let k = 0; k < grants.length; k++) results[at[start + k]!] = { recorded: true, grant: grants[k]! };
    }
    this.counters.recorded += preps.length;
    if (this.logger.isLevelEnabled('debug')) {
      for (const r of results) {
        if (!r.recorded) continue;
        const g = r.grant;
        this.logger.debug({ event: 'grant', client_ip: g.ip, user: g.user, source: g.source, expires: g.expires, count: g.count }, `grant for ${g.ip} until ${new Date(g.expires).toISOString()}`);
      }
    }
    return results;
  }

  private async recordPart(preps: readonly PreparedLogin[], stateArgs: readonly string[], now: number): Promise<Grant[]> {
    const slotOf = new Map<string, number>();
    const ips: string[] = [];
    for (const p of preps) {
      if (slotOf.has(p.ip)) continue;
      ips.push(p.ip);
      slotOf.set(p.ip, ips.length);
    }
    const keys = [this.keys.index, this.keys.state, ...ips.map((ip) => this.keys.grant + ip)];
    const args: string[] = [String(now), String(ips.length), ...ips, String(preps.length)];
    for (const p of preps) args.push(String(slotOf.get(p.ip)), String(p.at), String(p.expires), p.user ?? '', p.service ?? '', p.source);
    args.push(String(stateArgs.length / 2), ...stateArgs);
    const op = `recording ${preps.length} login(s)`;
    const reply = await this.run(op, SCRIPTS.record, keys, args);
    if (!Array.isArray(reply) || !Array.isArray(reply[0]) || reply[0].length !== preps.length) throw this.ioError(op, new Error('unexpected reply from the record script'));
    const [records, unreadable] = reply as [unknown[], unknown];
    if (Array.isArray(unreadable)) {
      for (const ip of unreadable) this.logger.warn({ event: 'grant_unreadable', client_ip: String(ip), store: this.url }, `replaced an unreadable grant record for ${String(ip)}`);
    }
    return records.map((raw, k) => {
      try {
        return toGrant(preps[k]!.ip, decodeRedisGrant(raw));
      } catch (err) {
        throw this.ioError(op, err);
      }
    });
  }

  async lookup(ip: string, now: number = this.clock()): Promise<Grant | undefined> {
    this.assertOpen('lookup');
    const key = normalizeIp(ip);
    if (key === undefined) return undefined; // junk can never hold a grant: an answer, not an error
    const raw = await this.call(`lookup of ${key}`, this.keys.grant + key, true, ['GET', this.keys.grant + key]);
    if (raw === null || raw === undefined) return undefined;
    let g: Stored;
    try {
      g = decodeRedisGrant(raw);
    } catch (err) {
      // Never "no grant" and never a grant on a record we cannot read: the engine answers 451 4.3.0.
      this.logger.warn({ event: 'grant_unreadable', client_ip: key, store: this.url, err: causeText(err) }, `unreadable grant record for ${key}: ${causeText(err)}; delete it with \`relaygate map del ${key}\``);
      throw this.ioError(`lookup of ${key}`, err);
    }
    // Expired = absent right away, whatever Redis's own PX expiry has done yet.
    return g.expires <= now ? undefined : toGrant(key, g);
  }

  async delete(ip: string): Promise<boolean> {
    this.assertOpen('delete');
    const key = normalizeIp(ip);
    if (key === undefined) return false;
    const r = await this.run(`delete of ${key}`, SCRIPTS.delete, [this.keys.index, this.keys.grant + key], [String(this.clock()), key]);
    return r === 1;
  }

  async list(now: number = this.clock()): Promise<Grant[]> {
    this.assertOpen('list');
    const out: Grant[] = [];
    for (let offset = 0; offset < 100_000_000; offset += LIST_CHUNK) {
      const reply = await this.run('list', SCRIPTS.list, [this.keys.index], [String(now), String(offset), String(LIST_CHUNK), this.keys.grant], true);
      if (!Array.isArray(reply)) throw this.ioError('list', new Error('unexpected reply from the list script'));
      for (let i = 0; i + 1 < reply.length; i += 2) {
        const ip = normalizeIp(String(reply[i]));
        const raw = reply[i + 1];
        if (ip === undefined || raw === null || raw === undefined) continue; // foreign member, or expired by Redis meanwhile
        try {
          const g = decodeRedisGrant(raw);
          if (g.expires > now) out.push(toGrant(ip, g));
        } catch (err) {
          this.logger.warn({ event: 'grant_unreadable', client_ip: ip, store: this.url, err: causeText(err) }, `list skips the unreadable grant record for ${ip}`);
        }
      }
      if (reply.length < 2 * LIST_CHUNK) break;
    }
    return out.sort(byIp);
  }

  async sweep(now: number = this.clock()): Promise<number> {
    this.assertOpen('sweep');
    const started = performance.now();
    let swept = 0;
    let examined = 0;
    // Bounded: each chunk removes what it examined (or repairs it to a later score), so the range shrinks.
    for (let i = 0; i < 1_000_000 && !this.closed; i++) {
      const r = await this.run('sweep', SCRIPTS.sweep, [this.keys.index], [String(Math.floor(now)), String(REDIS_SWEEP_CHUNK), this.keys.grant]);
      if (!Array.isArray(r) || typeof r[0] !== 'number' || typeof r[1] !== 'number') throw this.ioError('sweep', new Error('unexpected reply from the sweep script'));
      examined += r[0];
      swept += r[1];
      if (r[0] < REDIS_SWEEP_CHUNK) break;
    }
    this.counters.swept += swept;
    this.lastSweepExamined = examined;
    this.lastSweepAt = now;
    this.lastSweepMs = Math.round((performance.now() - started) * 1000) / 1000;
    return swept;
  }

  async stats(now: number = this.clock()): Promise<MapStats> {
    this.assertOpen('stats');
    const r = await this.run('stats', SCRIPTS.stats, [this.keys.index], [String(Math.floor(now))], true);
    if (!Array.isArray(r)) throw this.ioError('stats', new Error('unexpected reply from the stats script'));
    const n = (x: unknown): number | null => (x === null || x === undefined || x === false ? null : Number(x));
    const newest = n(r[3]);
    return {
      active: Number(r[0]),
      expiredPending: Number(r[1]),
      oldestExpiry: n(r[2]),
      newestExpiry: newest !== null && newest > now ? newest : null,
      recorded: this.counters.recorded,
      refused: this.counters.refused,
      swept: this.counters.swept,
      lastSweepAt: this.lastSweepAt,
      lastSweepMs: this.lastSweepMs,
      backend: `redis:${this.url}`,
    };
  }

  /** Closes the connection (commands in flight finish first, bounded by the deadline); later calls throw RG_ERR_STORE_IO. */
  async close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    const link = this.link;
    this.closing = (async () => {
      if (link === undefined) return;
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([link.close(), new Promise((r) => (timer = setTimeout(r, this.timeoutMs)))]);
      } catch {
        // closing a client that is reconnecting rejects; destroy below ends it either way
      } finally {
        clearTimeout(timer);
        link.destroy();
      }
    })();
    return this.closing;
  }
}
