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
import { startSources, describeWatch, type RunningSource } from '../sources/index.ts';
import type { WatchConfig } from '../config/index.ts';
import { RelaygateError } from '../errors.ts';
import { PREFIXES } from '../sources/prefix.ts';
import { FORMATS } from '../sources/formats/index.ts';
import { startConfiguredGateway, type RunningGateway } from '../frontends/smtp/daemon.ts'; // SMTP gateway

export interface RunOptions {
  config?: string;
  /** `--stdin-format NAME`: read log lines from standard input in this format (besides any [[watch]]) */
  stdinFormat?: string;
  stdinPrefix?: string;
}

/** The [[watch]] entry `--stdin-format` stands for, validated like one from the file. */
export function stdinWatch(opts: RunOptions): WatchConfig | undefined {
  if (opts.stdinFormat === undefined) return undefined;
  if (!Object.hasOwn(FORMATS, opts.stdinFormat)) {
    throw new RelaygateError('RG_ERR_USAGE', `--stdin-format ${JSON.stringify(opts.stdinFormat)}: unknown format; known: ${Object.keys(FORMATS).join(', ')}`);
  }
  const prefix = opts.stdinPrefix ?? 'syslog';
  if (!Object.hasOwn(PREFIXES, prefix)) throw new RelaygateError('RG_ERR_USAGE', `--stdin-prefix ${JSON.stringify(prefix)}: unknown prefix; known: ${Object.keys(PREFIXES).join(', ')}`);
  return { stdin: true, format: opts.stdinFormat, prefix: prefix as WatchConfig['prefix'], track_logout: false, start_at: 'start' };
}

export async function runCommand(opts: RunOptions): Promise<void> {
  const extra = stdinWatch(opts);
  // Config errors are printed by main's reporter (exit 78) before any logger exists; after that, pino.
  const boot = await loadConfig(opts.config);
  const logger = createLogger({ level: boot.config.log_level });
  const rt = await openRuntime(opts.config, logger);
  const { config } = rt;
  await rt.engine(); // compile the restriction lists and open their tables now, not at the first request
  const sweeper = startSweeper({ map: rt.map, intervalMs: config.sweep_interval * 1000, clock: rt.clock, logger });
  const watches = extra ? [...config.watch, extra] : [...config.watch];
  let sources: RunningSource[] = [];
  try {
    sources = await startSources(watches, { map: rt.map, clock: rt.clock, logger, grace: config.grace });
  } catch (err) {
    await sweeper.stop();
    await rt.close();
    throw err;
  }
  // ---- SMTP gateway (src/frontends/smtp): started only when [[listen]] is configured ----
  let smtpGateway: RunningGateway | undefined;
  if (config.listen.length > 0) {
    try {
      smtpGateway = await startConfiguredGateway({ config, engine: await rt.engine(), grants: rt.map, logger, clock: rt.clock });
    } catch (err) {
      for (const src of sources) await src.stop();
      await sweeper.stop();
      await rt.close();
      throw err;
    }
    process.on('SIGHUP', () => void smtpGateway?.reloadTls()); // TLS key/cert re-read on SIGHUP
  }
  // ---- end SMTP gateway ----
  // The daemon lives until a signal stops it, even when nothing else (a listener, a watch) holds the loop.
  const keepAlive = setInterval(() => undefined, 1 << 30);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ event: 'stop', signal }, `received ${signal}: stopping`);
    clearInterval(keepAlive);
    try {
      await smtpGateway?.stop(); // SMTP gateway: stop accepting, let sessions finish (bounded), close the upstream pool
      // Sources first: each finishes its batch and saves its position with it, then the store closes.
      for (const src of sources) await src.stop();
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

  // Announce only now: a supervisor (or a test) that reacts to these lines may signal at once.
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
    { event: 'components', sources: watches.map(describeWatch), frontends: config.listen.map((l) => `${l.role}:${l.address}`) },
    `${
      sources.length === 0
        ? 'no [[watch]] sources configured (add [[watch]] tables to learn grants from POP/IMAP logs)'
        : `${sources.length} source(s) running: ${watches.map(describeWatch).join(', ')}`
    }; ${config.listen.length === 0 ? 'no [[listen]] SMTP listeners configured' : `SMTP listeners: ${config.listen.map((l) => `${l.role} ${l.address}`).join(', ')}`}`,
  );
}
