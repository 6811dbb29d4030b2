// Wiring shared by every command: configuration → network sets → access map → engine.
// main.ts (the daemon) and the one-shot commands (check, map) build the same objects here, so a CLI answer
// is the daemon's answer. Security: nothing is opened before the whole configuration has validated.

import { resolve } from 'node:path';
import { loadConfig, validateConfig, type Config, type LoadedConfig, type NetworkSets } from '../config/index.ts';
import { openAccessMap, type AccessMap } from '../store/index.ts';
import { createEngine, type Engine } from '../engine/index.ts';
import { systemClock, type Clock } from '../clock.ts';
import type { Logger } from '../log/logger.ts';

export interface Runtime {
  readonly loaded: LoadedConfig;
  readonly config: Config;
  readonly nets: NetworkSets;
  readonly map: AccessMap;
  readonly clock: Clock;
  readonly logger: Logger;
  /** built on demand: one-shot map commands don't need tables opened */
  engine(): Promise<Engine>;
  close(): Promise<void>;
}

export function storePath(config: Config): string {
  return resolve(config.store.path ?? resolve(config.data_dir, 'map'));
}

/** Loads and validates the configuration (throws RG_ERR_CONFIG_*), then opens the store (RG_ERR_STORE_OPEN). */
export async function openRuntime(configFile: string | undefined, logger: Logger, clock: Clock = systemClock): Promise<Runtime> {
  const loaded = await loadConfig(configFile);
  const nets = await validateConfig(loaded);
  const { config } = loaded;
  const map = await openAccessMap({
    type: config.store.type,
    path: storePath(config),
    grace: config.grace,
    mapSize: config.store.map_size,
    mynetworks: nets.mynetworks,
    neverAuthorize: nets.neverAuthorize,
    clock,
    logger,
  });
  let engine: Engine | undefined;
  return {
    loaded,
    config,
    nets,
    map,
    clock,
    logger,
    async engine() {
      engine ??= await createEngine({
        relayRestrictions: [...config.relay_restrictions],
        senderRestrictions: [...config.sender_restrictions],
        mynetworks: nets.mynetworks,
        mydestination: [...config.mydestination],
        relayDomains: [...config.relay_domains],
        senderLoginMaps: [...config.sender_login_maps],
        grants: map,
        clock,
        logger,
      });
      return engine;
    },
    async close() {
      await engine?.close();
      await map.close();
    },
  };
}
