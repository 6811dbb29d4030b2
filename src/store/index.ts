// store/: the face of the access map. openAccessMap() picks the backend by `type` (a registry row per
// backend: "lmdb", the embedded default; "redis" for fleets comes later) and returns the AccessMap contract
// of types.ts, which every backend passes through test/store/contract.ts.
//
// Security: trusts the configuration it is given (validated by config/ before this is called); every login
// is re-checked inside the backend (normalizeIp, mynetworks, never_authorize).

import { RelaygateError } from '../errors.ts';
import { openLmdbAccessMap, type LmdbAccessMapOptions } from './lmdb-map.ts';
import type { AccessMap } from './types.ts';

export type { AccessMap, Grant, LoginEvent, MapStats, RecordResult, RefusalReason } from './types.ts';
export { startSweeper, type Sweeper, type SweeperOptions } from './sweeper.ts';
export { LmdbAccessMap, openLmdbAccessMap, DEFAULT_GRACE_SECONDS, STORE_FORMAT_VERSION, type LmdbAccessMapOptions } from './lmdb-map.ts';

export type StoreType = 'lmdb';

export interface OpenAccessMapOptions extends LmdbAccessMapOptions {
  readonly type: StoreType;
}

const BACKENDS: Record<StoreType, (opts: OpenAccessMapOptions) => Promise<AccessMap>> = {
  lmdb: openLmdbAccessMap,
};

/** Opens the configured access map; throws RG_ERR_STORE_OPEN (naming the path and the fix) when it cannot. */
export async function openAccessMap(opts: OpenAccessMapOptions): Promise<AccessMap> {
  const open = Object.hasOwn(BACKENDS, opts.type) ? BACKENDS[opts.type] : undefined;
  if (open === undefined) {
    throw new RelaygateError('RG_ERR_STORE_OPEN', `unknown access map type ${JSON.stringify(opts.type)}; supported: ${Object.keys(BACKENDS).join(', ')}`);
  }
  return open(opts);
}
