// Wiring shared by every command: configuration → network sets → access map → engine.
// main.ts (the daemon) and the one-shot commands (check, map) build the same objects here, so a CLI answer
// is the daemon's answer. Security: nothing is opened before the whole configuration has validated.

import { resolve } from 'node:path';
import { loadConfig, validateConfig, type Config, type LoadedConfig, type NetworkSets } from '../config/index.ts';
import { openAccessMap, accessMapOptions, storeDescription, type AccessMap } from '../store/index.ts';
import { createEngine, type Engine, type GrantLookup } from '../engine/index.ts';
import { SwitchableEngine } from '../engine/switchable.ts';
import type { UsageSink } from '../engine/types.ts';
import { systemClock, type Clock } from '../clock.ts';
import type { Logger } from '../log/logger.ts';
import { SunsetPolicy } from '../engine/sunset.ts';
import { sunsetOptions } from '../config/index.ts';
import { UsageLog } from '../usage/usage-log.ts';

export interface Runtime {
  readonly loaded: LoadedConfig;
  readonly config: Config;
  readonly nets: NetworkSets;
  readonly map: AccessMap;
  readonly clock: Clock;
  readonly logger: Logger;
  /** the usage log, when opened with { usage: true } and usage_log is on (the daemon) */
  readonly usage: UsageLog | undefined;
  /** built on demand: one-shot map commands don't need tables opened; SIGHUP swaps its implementation */
  engine(): Promise<SwitchableEngine>;
  close(): Promise<void>;
}

/** The store as start-up lines name it: the LMDB directory, or the Redis URL without its password. */
export function storePath(config: Config): string {
  return storeDescription(config).replace(/^(lmdb|redis):/, '');
}

/** The main engine (relay_restrictions, sender_restrictions, ...) of a validated configuration. */
export function buildEngine(config: Config, nets: NetworkSets, deps: { grants: GrantLookup; clock: Clock; logger: Logger; usage?: UsageSink | undefined }): Promise<Engine> {
  return createEngine({
    relayRestrictions: [...config.relay_restrictions],
    senderRestrictions: [...config.sender_restrictions],
    mynetworks: nets.mynetworks,
    mydestination: [...config.mydestination],
    relayDomains: [...config.relay_domains],
    senderLoginMaps: [...config.sender_login_maps],
    grants: deps.grants,
    clock: deps.clock,
    logger: deps.logger,
    sunset: new SunsetPolicy(sunsetOptions(config)),
    usage: deps.usage,
  });
}

export function usagePath(config: Config): string {
  return resolve(config.data_dir, 'usage');
}

/**
 * Loads and validates the configuration (throws RG_ERR_CONFIG_*), then opens the store (RG_ERR_STORE_OPEN).
 * `usage: true` (the daemon) also opens the usage log and hands it to the engine, so permitted relays are
 * counted; one-shot commands such as `check` never count.
 */
export async function openRuntime(configFile: string | undefined, logger: Logger, clock: Clock = systemClock, opts: { usage?: boolean } = {}): Promise<Runtime> {
  const loaded = await loadConfig(configFile);
  const nets = await validateConfig(loaded);
  const { config } = loaded;
  const map = await openAccessMap(accessMapOptions(config, { mynetworks: nets.mynetworks, neverAuthorize: nets.neverAuthorize, clock, logger }));
  let usage: UsageLog | undefined;
  if (opts.usage === true && config.usage_log) {
    try {
      usage = await UsageLog.open(usagePath(config), { clock, logger });
    } catch (err) {
      await map.close();
      throw err;
    }
  }
  let engine: SwitchableEngine | undefined;
  return {
    usage,
    loaded,
    config,
    nets,
    map,
    clock,
    logger,
    async engine() {
      engine ??= new SwitchableEngine(await buildEngine(config, nets, { grants: map, clock, logger, usage }));
      return engine;
    },
    async close() {
      await engine?.close();
      await usage?.close();
      await map.close();
    },
  };
}
