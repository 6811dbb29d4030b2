// store/: the face of the access map. openAccessMap() picks the backend by `type` (a registry row per
// backend: "lmdb", the embedded default; "redis", shared by several SMTP nodes) and returns the AccessMap
// contract of types.ts, which every backend passes through test/store/contract.ts.
//
// Security: trusts the configuration it is given (validated by config/ before this is called, see
// storeConfigProblems); every login is re-checked inside the backend (normalizeIp, mynetworks,
// never_authorize).

import { RelaygateError } from '../errors.ts';
import { openLmdbAccessMap, type LmdbAccessMapOptions } from './lmdb-map.ts';
import { openRedisAccessMap, type RedisAccessMapOptions } from './redis-map.ts';
import type { AccessMap } from './types.ts';

export type { AccessMap, Grant, LoginEvent, MapStats, RecordResult, RefusalReason } from './types.ts';
export { startSweeper, type Sweeper, type SweeperOptions } from './sweeper.ts';
export { LmdbAccessMap, openLmdbAccessMap, DEFAULT_GRACE_SECONDS, STORE_FORMAT_VERSION, type LmdbAccessMapOptions } from './lmdb-map.ts';
export { RedisAccessMap, openRedisAccessMap, redactRedisUrl, isLoopbackHost, type RedisAccessMapOptions } from './redis-map.ts';
export { storeConfigProblems, storeDescription, accessMapOptions } from './config.ts';

export type StoreType = 'lmdb' | 'redis';

export type OpenAccessMapOptions = ({ readonly type: 'lmdb' } & LmdbAccessMapOptions) | ({ readonly type: 'redis' } & RedisAccessMapOptions);

const BACKENDS: { readonly [T in StoreType]: (opts: Extract<OpenAccessMapOptions, { type: T }>) => Promise<AccessMap> } = {
  lmdb: openLmdbAccessMap,
  redis: openRedisAccessMap,
};

/** Opens the configured access map; throws RG_ERR_STORE_OPEN (naming the path or URL and the fix) when it cannot. */
export async function openAccessMap(opts: OpenAccessMapOptions): Promise<AccessMap> {
  if (!Object.hasOwn(BACKENDS, opts.type)) {
    throw new RelaygateError('RG_ERR_STORE_OPEN', `unknown access map type ${JSON.stringify(opts.type)}; supported: ${Object.keys(BACKENDS).join(', ')}`);
  }
  return opts.type === 'redis' ? BACKENDS.redis(opts) : BACKENDS.lmdb(opts);
}
