// `relaygate run`: the daemon in the foreground.
// Order (ARCHITECTURE.md): load and validate config → open store → start the sweeper → start sources →
// start front ends. SIGTERM/SIGINT stop it cleanly (sweeper stopped, store flushed and closed, exit 0);
// SIGHUP re-validates the configuration file and keeps the running one when the new one is invalid.
// Security: nothing listens before the configuration validated and the store opened; a store that cannot
// open ends the process with RG_ERR_STORE_OPEN instead of running without it.

import { createLogger } from '../log/logger.ts';
import { loadConfig, validateConfig } from '../config/index.ts';
import { startSweeper } from '../store/index.ts';
import { isRelaygateError } from '../errors.ts';
import { openRuntime, storePath } from './runtime.ts';

export async function runCommand(opts: { config?: string }): Promise<void> {
  // Config errors are printed by main's reporter (exit 78) before any logger exists; after that, pino.
  const boot = await loadConfig(opts.config);
  const logger = createLogger({ level: boot.config.log_level });
  const rt = await openRuntime(opts.config, logger);
  const { config } = rt;
  await rt.engine(); // compile the restriction lists and open their tables now, not at the first request
  const sweeper = startSweeper({ map: rt.map, intervalMs: config.sweep_interval * 1000, clock: rt.clock, logger });
  const stats = await rt.map.stats();
  logger.info(
    {
      event: 'start',
      config_file: rt.loaded.file ?? '(built-in defaults)',
      store: `${config.store.type}:${storePath(config)}`,
      grants: stats.active,
      grace_s: config.grace,
      sweep_interval_s: config.sweep_interval,
      relay_restrictions: config.relay_restrictions,
    },
    `relaygate started: access map ${config.store.type}:${storePath(config)} with ${stats.active} active grant(s), grace ${config.grace}s, sweeping every ${config.sweep_interval}s`,
  );
  logger.info(
    { event: 'components', sources: [], frontends: [] },
    'no log watchers, feeds or front ends are configured in this version yet: relaygate keeps the map and sweeps it; use `relaygate map` and `relaygate check` to work with it',
  );

  // The daemon lives until a signal stops it, even when nothing else (a listener, a watch) holds the loop.
  const keepAlive = setInterval(() => undefined, 1 << 30);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ event: 'stop', signal }, `received ${signal}: stopping`);
    clearInterval(keepAlive);
    try {
      await sweeper.stop();
      await rt.close();
      logger.info({ event: 'stopped' }, 'relaygate stopped');
      process.exit(0);
    } catch (err) {
      logger.error({ event: 'stop_failed', err }, 'error while stopping');
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGHUP', () => {
    void (async () => {
      try {
        const next = await loadConfig(opts.config);
        await validateConfig(next);
        logger.info({ event: 'reload', config_file: next.file }, 'SIGHUP: configuration is valid; settings other than log_level take effect at the next restart in this version');
        logger.level = next.config.log_level;
      } catch (err) {
        const details = isRelaygateError(err) ? err.details : [];
        logger.error({ event: 'reload_refused', err_code: isRelaygateError(err) ? err.code : 'RG_ERR_INTERNAL', details }, `SIGHUP: new configuration refused, keeping the running one: ${(err as Error).message}`);
      }
    })();
  });
}
