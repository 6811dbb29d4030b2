// observeAccessMap(): the access map as the daemon's writers see it when a Postfix table export runs.
//
// The hook sits outside the store: every write (record, recordMany, delete) is passed to the real map and,
// once that committed, its outcome is reported to the observer; sweep() is followed by a reconcile. The store
// and its hot path stay unchanged (one extra call per recorded grant, a Map update and no I/O), and every
// backend (LMDB now, Redis later) gets the export for free. Reads go straight through.
//
// Security: the observer only learns what the store accepted (recorded grants carry the store's normalized
// IP), so refusals (bad_ip, mynetworks, never_authorize, stale) never reach the table. An observer that
// throws is logged and ignored: the grant is already committed, and the next reconcile repairs the table.

import type { Logger } from '../log/logger.ts';
import type { AccessMap, Grant } from '../store/types.ts';

export interface GrantObserver {
  noteGrant(g: Grant): void;
  noteDelete(ip: string): void;
  /** after each sweep: a good moment to compare with the map (reconcile) */
  noteSweep(): void;
}

export function observeAccessMap(map: AccessMap, observer: GrantObserver, logger: Logger): AccessMap {
  const safely = (what: string, fn: () => void): void => {
    try {
      fn();
    } catch (err) {
      logger.error({ event: 'export_observer_failed', what, err }, `table export could not follow a ${what}; the next sweep reconciles it: ${(err as Error).message}`);
    }
  };
  return {
    async record(login) {
      const r = await map.record(login);
      if (r.recorded) safely('grant', () => observer.noteGrant(r.grant));
      return r;
    },
    async recordMany(logins, state) {
      const results = await map.recordMany(logins, state);
      safely('grant', () => {
        for (const r of results) if (r.recorded) observer.noteGrant(r.grant);
      });
      return results;
    },
    getState: (key) => map.getState(key),
    setState: (key, value) => map.setState(key, value),
    lookup: (ip, now) => map.lookup(ip, now),
    async delete(ip) {
      const existed = await map.delete(ip);
      safely('delete', () => observer.noteDelete(ip));
      return existed;
    },
    list: (now) => map.list(now),
    async sweep(now) {
      const n = await map.sweep(now);
      safely('sweep', () => observer.noteSweep());
      return n;
    },
    stats: (now) => map.stats(now),
    close: () => map.close(),
  };
}
