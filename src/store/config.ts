// The `[store]` table, checked as a whole (config/validate.ts runs this, so `relaygate config check` refuses
// what `relaygate run` would), and the one-line description of the store used in start-up logs.
//
// Security: an access map on a network Redis is a list of who may relay, writable by anyone who can talk
// to that Redis. A non-loopback Redis without a password is therefore an error, not a warning: relaygate
// must not become an open relay because a Redis port was reachable. Passwords never appear in problems.

import { resolve } from 'node:path';
import type { Config } from '../config/schema.ts';
import { redactRedisUrl, parseNode, isLoopbackHost } from './redis-map.ts';
import { where } from '../config/load.ts';
import type { CidrSet } from '../net/index.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log/logger.ts';
import type { OpenAccessMapOptions } from './index.ts';

type StoreConfig = Config['store'];

const REDIS_ONLY = ['url', 'node_name', 'sentinel_master', 'redis'] as const;

function plain(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

/** Every problem of the `[store]` table, each starting with its key (and its line, given the file's text). */
export function storeConfigProblems(store: StoreConfig, text = ''): string[] {
  const out: string[] = [];
  const at = (key: string): string => where(['store', ...key.split(/[.[\]]+/).filter((k) => k !== '')], text);
  if (store.type !== 'redis') {
    for (const k of REDIS_ONLY) if (store[k] !== undefined) out.push(`${at(k)}: applies only with type = "redis"`);
    if (store.cluster) out.push(`${at('cluster')}: applies only with type = "redis"`);
    if (store.nodes.length > 0) out.push(`${at('nodes')}: applies only with type = "redis"`);
    return out;
  }
  if (store.path !== undefined) out.push(`${at('path')}: applies only with type = "lmdb" (a Redis store is named by url)`);
  if (store.url === undefined) {
    out.push(`${at('url')}: type = "redis" needs url = "redis://[:PASSWORD@]host:port[/db]" (or rediss:// for TLS)`);
    return out;
  }
  let url: URL;
  try {
    url = new URL(store.url);
  } catch {
    out.push(`${at('url')}: ${JSON.stringify(redactRedisUrl(store.url))} is not a URL; write redis://[:PASSWORD@]host:port[/db]`);
    return out;
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') out.push(`${at('url')}: scheme ${url.protocol} is not redis: or rediss: (unix sockets: pass socket.path through [store.redis])`);
  if (url.hostname === '') out.push(`${at('url')}: names no host`);
  const db = url.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d{1,5}$/.test(db)) out.push(`${at('url')}: the path must be a database number (/0, /1, ...), not ${JSON.stringify(url.pathname)}`);
  if (store.cluster && /^\d+$/.test(db) && db !== '0') out.push(`${at('url')}: Redis Cluster has only database 0`);
  if (store.cluster && store.sentinel_master !== undefined) out.push(`${at('cluster')}: cannot be combined with sentinel_master (choose one topology)`);
  if (store.nodes.length > 0 && !store.cluster && store.sentinel_master === undefined) out.push(`${at('nodes')}: applies only with cluster = true or sentinel_master`);
  // A script touches keys of one hash slot only: in a cluster all of relaygate's keys share a hash tag.
  if (store.cluster && !/\{[^{}]+\}/.test(store.key_prefix)) out.push(`${at('key_prefix')}: in a cluster it must contain a hash tag so every key lands in one slot, e.g. key_prefix = "{relaygate}:" (got ${JSON.stringify(store.key_prefix)})`);
  const hosts = [url.hostname];
  store.nodes.forEach((n, i) => {
    try {
      const { host, port } = parseNode(n, 6379);
      if (host === '' || !Number.isInteger(port) || port < 1 || port > 65535) throw new Error('no host or port');
      hosts.push(host);
    } catch {
      out.push(`${at(`nodes[${i}]`)}: ${JSON.stringify(n)} is not "host:port" or a redis:// URL`);
    }
  });
  const pass = plain(store.redis);
  const passwordSet =
    url.password !== '' ||
    pass?.password !== undefined ||
    pass?.credentialsProvider !== undefined ||
    plain(pass?.defaults)?.password !== undefined ||
    plain(pass?.nodeClientOptions)?.password !== undefined;
  const remote = hosts.filter((h) => h !== '' && !isLoopbackHost(h));
  if (remote.length > 0 && !passwordSet) {
    out.push(
      `${at('url')}: Redis on ${remote.join(', ')} (not loopback) without a password: whoever reaches that port could grant relaying. Set a password (Redis requirepass or an ACL user) and put it in the url (redis://:PASSWORD@host:port or redis://USER:PASSWORD@host:port); use rediss:// across untrusted networks`,
    );
  }
  if (pass !== undefined) {
    const ours = ['url', 'rootNodes', 'sentinelRootNodes', ...(store.sentinel_master === undefined ? [] : ['name'])];
    for (const k of ours) if (k in pass) out.push(`${at(`redis.${k}`)}: set by relaygate from [store] url / nodes / sentinel_master; remove it here`);
    if (pass.disableOfflineQueue === false) out.push(`${at('redis.disableOfflineQueue')}: must stay true (queued lookups would wait for Redis instead of answering 451 at once)`);
  }
  return out;
}

/** How the start-up line names the store: `lmdb:/abs/path` or `redis:redis://host:port/db` (no password). */
export function storeDescription(config: Config): string {
  if (config.store.type === 'redis') return `redis:${redactRedisUrl(config.store.url ?? '')}`;
  return `lmdb:${resolve(config.store.path ?? resolve(config.data_dir, 'map'))}`;
}

/** The options openAccessMap() takes, from a validated configuration. */
export function accessMapOptions(config: Config, env: { mynetworks: CidrSet; neverAuthorize: CidrSet; clock: Clock; logger: Logger }): OpenAccessMapOptions {
  const s = config.store;
  if (s.type === 'redis') {
    return {
      type: 'redis',
      url: s.url ?? '',
      keyPrefix: s.key_prefix,
      timeoutMs: s.timeout * 1000,
      ...(s.node_name === undefined ? {} : { nodeName: s.node_name }),
      cluster: s.cluster,
      ...(s.sentinel_master === undefined ? {} : { sentinelMaster: s.sentinel_master }),
      nodes: s.nodes,
      ...(s.redis === undefined ? {} : { clientOptions: s.redis }),
      grace: config.grace,
      ...env,
    };
  }
  return { type: 'lmdb', path: resolve(s.path ?? resolve(config.data_dir, 'map')), grace: config.grace, mapSize: s.map_size, ...env };
}
