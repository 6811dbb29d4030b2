// `relaygate run`: the daemon in the foreground.
// Order (ARCHITECTURE.md): load and validate config → open store → start the sweeper → start sources →
// start front ends. SIGTERM/SIGINT stop it cleanly (sweeper stopped, store flushed and closed, exit 0);
// SIGHUP re-validates the configuration file and keeps the running one when the new one is invalid.
// Security: nothing listens before the configuration validated and the store opened; a store that cannot
// open ends the process with RG_ERR_STORE_OPEN instead of running without it.

import { createLogger } from '../log/logger.ts';
import { loadConfig, validateConfig, sunsetOptions, type Config, type LoadedConfig, type NetworkSets } from '../config/index.ts';
import { startSweeper } from '../store/index.ts';
import { isRelaygateError } from '../errors.ts';
import { openRuntime, buildEngine } from './runtime.ts';
import { storeDescription } from '../store/config.ts';
import { startSources, describeWatch, type RunningSource } from '../sources/index.ts';
import type { WatchConfig } from '../config/index.ts';
import { RelaygateError } from '../errors.ts';
import { PREFIXES } from '../sources/prefix.ts';
import { FORMATS } from '../sources/formats/index.ts';
import { startConfiguredGateway, type RunningGateway } from '../frontends/smtp/daemon.ts'; // SMTP gateway
import { startConfiguredFeeds, networkFeedsConfigured, type RunningFeeds } from '../feeds/index.ts'; // network feeds: DRAC, whoson
import { startTableExport, type RunningExport } from '../export/index.ts'; // Postfix table export
import { startPostfixFrontends, type RunningPostfixFrontends } from '../frontends/postfix/index.ts'; // Postfix policy service, socketmap
import { startConfiguredFeed, type HttpFeed } from '../feeds/http-feed.ts'; // signed HTTP feed (receiving side)
import { startPush, type RunningPush } from '../push/index.ts'; // push_to: outbox + signed delivery (sending side)
import { endpointText, parseEndpoint, type Endpoint } from '../frontends/smtp/endpoints.ts';
import { startStatusServer, type StatusServer } from '../http/status-server.ts'; // /metrics, /healthz, status page
import { metrics } from '../metrics/metrics.ts';
import { CidrSet } from '../net/index.ts';
import { SunsetPolicy } from '../engine/sunset.ts';
import type { Engine } from '../engine/index.ts';
import { VERSION } from '../version.ts';

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
  const logger = createLogger({ level: boot.config.log_level, perTurn: true });
  const rt = await openRuntime(opts.config, logger, undefined, { usage: true });
  const { config } = rt;
  // What is running, in start order; stopped in reverse order (on SIGTERM, or when a later start fails).
  const started: Array<{ name: string; stop: () => Promise<void> }> = [{ name: 'store', stop: () => rt.close() }];
  const stopAll = async () => {
    for (const c of started.splice(0).reverse()) {
      try {
        await c.stop();
      } catch (err) {
        logger.error({ event: 'stop_failed', component: c.name, err }, `error while stopping ${c.name}: ${(err as Error).message}`);
        throw err;
      }
    }
  };
  const watches = extra ? [...config.watch, extra] : [...config.watch];
  let sources: RunningSource[] = [];
  let smtpGateway: RunningGateway | undefined;
  let feeds: RunningFeeds | undefined;
  let postfixFrontends: RunningPostfixFrontends | undefined;
  let httpFeed: HttpFeed | undefined;
  let push: RunningPush | undefined;
  let status: StatusServer | undefined;
  const engine = await rt.engine(); // compile the restriction lists and open their tables now, not at the first request
  try {
    // Postfix table export (src/export): every writer records through its observed map, so the table follows.
    const tableExport: RunningExport | undefined = config.export.table === undefined ? undefined : await startTableExport({ settings: config.export, map: rt.map, clock: rt.clock, logger });
    if (tableExport) started.push({ name: 'export', stop: () => tableExport.stop() }); // writes what is pending; the table stays as last written
    const grants = tableExport?.map ?? rt.map;
    // push_to (src/push): the sources then write to the on-disk outbox, which is delivered to each URL.
    push = await startPush({ config, local: grants, mynetworks: rt.nets.mynetworks, neverAuthorize: rt.nets.neverAuthorize, clock: rt.clock, logger });
    if (push) started.push({ name: 'push', stop: () => push!.stop() }); // aborts the request in flight (its logins stay queued)
    const sweeper = startSweeper({ map: grants, intervalMs: config.sweep_interval * 1000, clock: rt.clock, logger });
    started.push({ name: 'sweeper', stop: () => sweeper.stop() });
    // Sources stop before the store closes: each finishes its batch and saves its position with it.
    sources = await startSources(watches, { map: push?.map ?? grants, clock: rt.clock, logger, grace: config.grace });
    for (const src of sources) started.push({ name: `source ${src.name}`, stop: () => src.stop() });
    metrics.setMapSize(async () => (await rt.map.stats()).active);
    const unregister = metrics.addSources(async () => (await Promise.all(sources.map((s) => s.stats()))).flat());
    started.push({ name: 'metrics', stop: async () => unregister() });
    // SMTP gateway (src/frontends/smtp): only with [[listen]]; stop lets sessions finish (bounded).
    if (config.listen.length > 0) {
      smtpGateway = await startConfiguredGateway({ config, engine, grants: rt.map, logger, clock: rt.clock });
      started.push({ name: 'smtp gateway', stop: () => smtpGateway!.stop() });
    }
    // Network feeds (src/feeds): DRAC and whoson; stop unregisters from the portmapper.
    if (networkFeedsConfigured(config)) {
      feeds = await startConfiguredFeeds({ config, map: grants, logger, clock: rt.clock });
      started.push({ name: 'network feeds', stop: () => feeds!.stop() });
    }
    // Postfix policy service and socketmap (src/frontends/postfix): only with [policy] / [socketmap] listen.
    postfixFrontends = await startPostfixFrontends({ config, mynetworks: rt.nets.mynetworks, grants: rt.map, logger, clock: rt.clock, usage: rt.usage });
    if (postfixFrontends) started.push({ name: 'postfix frontends', stop: () => postfixFrontends!.stop() });
    // Signed HTTP feed (src/feeds/http-feed.ts): only with [feed] listen.
    httpFeed = await startConfiguredFeed({ config, map: grants, clock: rt.clock, logger });
    if (httpFeed) started.push({ name: 'http feed', stop: () => httpFeed!.stop() });
    // Operations listener (src/http): /metrics, /healthz, status page; only with [http] listen.
    if (config.http.listen !== undefined) {
      const ep = parseEndpoint(config.http.listen, { allowPortZero: true }) as Endpoint;
      const relay = config.listen.length > 0 && config.smtp.relayhost !== undefined ? parseEndpoint(config.smtp.relayhost, { defaultPort: 25 }) : undefined;
      status = await startStatusServer({
        host: ep.host,
        port: ep.port,
        allow: new CidrSet(config.http.allow, 'http.allow'),
        map: rt.map,
        usage: rt.usage,
        sunset: new SunsetPolicy(sunsetOptions(config)),
        clock: rt.clock,
        logger,
        hostname: config.smtp.hostname,
        version: VERSION,
        sources: () => sources.map((s) => ({ name: s.name, ...s.health() })),
        upstream: typeof relay === 'object' ? relay : undefined,
      });
      started.push({ name: 'http', stop: () => status!.close() });
    }
  } catch (err) {
    await stopAll().catch(() => undefined);
    throw err;
  }
  // The daemon lives until a signal stops it, even when nothing else (a listener, a watch) holds the loop.
  const keepAlive = setInterval(() => undefined, 1 << 30);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ event: 'stop', signal }, `received ${signal}: stopping`);
    clearInterval(keepAlive);
    try {
      await stopAll();
      logger.info({ event: 'stopped' }, 'relaygate stopped');
      process.exit(0);
    } catch (err) {
      logger.error({ event: 'stop_failed', err }, 'error while stopping');
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));

  // SIGHUP: the new file is loaded and validated completely, and the new engines are built (tables opened),
  // before anything changes; then they replace the old ones at once. A decision in progress finishes on
  // the engine it started with. An invalid file changes nothing. Reloads never overlap.
  let reloading: Promise<void> = Promise.resolve();
  const reload = async () => {
    let next: LoadedConfig;
    let nets: NetworkSets;
    let mainEngine: Engine;
    try {
      next = await loadConfig(opts.config);
      nets = await validateConfig(next);
      mainEngine = await buildEngine(next.config, nets, { grants: rt.map, clock: rt.clock, logger, usage: rt.usage });
    } catch (err) {
      const details = isRelaygateError(err) ? err.details : [];
      logger.error(
        { event: 'reload_refused', err_code: isRelaygateError(err) ? err.code : 'RG_ERR_INTERNAL', details },
        `SIGHUP: new configuration refused, keeping the running one: ${(err as Error).message}${details.length > 0 ? `: ${details.join('; ')}` : ''}`,
      );
      return;
    }
    try {
      await postfixFrontends?.reload(next.config, nets.mynetworks);
    } catch (err) {
      await mainEngine.close();
      logger.error({ event: 'reload_refused', err }, `SIGHUP: policy restrictions refused, keeping the running configuration: ${(err as Error).message}`);
      return;
    }
    engine.swap(mainEngine);
    logger.level = next.config.log_level;
    const tls = await Promise.allSettled([smtpGateway?.reloadTls(), httpFeed?.reloadTls()]);
    const auth = (await smtpGateway?.reloadAuth()) ?? true;
    const restart = restartKeys(config, next.config);
    logger.info(
      { event: 'reloaded', config_file: next.file ?? null, relay_restrictions: next.config.relay_restrictions, needs_restart: restart, tls_failed: tls.some((t) => t.status === 'rejected'), auth_reloaded: auth },
      `SIGHUP: configuration reloaded: restrictions, networks, domains, tables, sunset dates, log_level, TLS certificates and the passwd file${
        restart.length > 0 ? `; these changed settings take effect only after a restart: ${restart.join(', ')}` : ''
      }`,
    );
  };
  process.on('SIGHUP', () => {
    reloading = reloading.then(reload, reload);
  });

  // Announce only now: a supervisor (or a test) that reacts to these lines may signal at once.
  const stats = await rt.map.stats();
  logger.info(
    {
      event: 'start',
      config_file: rt.loaded.file ?? '(built-in defaults)',
      store: storeDescription(config),
      grants: stats.active,
      grace_s: config.grace,
      sweep_interval_s: config.sweep_interval,
      relay_restrictions: config.relay_restrictions,
    },
    `relaygate started: access map ${storeDescription(config)} with ${stats.active} active grant(s), grace ${config.grace}s, sweeping every ${config.sweep_interval}s`,
  );
  logger.info(
    {
      event: 'components',
      sources: watches.map(describeWatch),
      frontends: [...config.listen.map((l) => `${l.role}:${l.address}`), ...(postfixFrontends?.describe() ?? [])],
      feeds: feeds?.describe ?? [],
      http_feed: httpFeed ? `${httpFeed.tls ? 'https' : 'http'}://${endpointText(httpFeed.address)}/v1/logins` : undefined,
      push_to: push?.senders.map((p) => p.url),
      http: status ? `http://${status.host.includes(':') ? `[${status.host}]` : status.host}:${status.port}/` : undefined,
    },
    `${
      sources.length === 0
        ? 'no [[watch]] sources configured (add [[watch]] tables to learn grants from POP/IMAP logs)'
        : `${sources.length} source(s) running: ${watches.map(describeWatch).join(', ')}`
    }; ${config.listen.length === 0 ? 'no [[listen]] SMTP listeners configured' : `SMTP listeners: ${config.listen.map((l) => `${l.role} ${l.address}`).join(', ')}`}`,
  );
}

/** Top-level settings whose change SIGHUP cannot apply (listeners, store, sources, feeds, ...). */
const RESTART_KEYS = ['data_dir', 'grace', 'sweep_interval', 'store', 'watch', 'listen', 'smtp', 'auth', 'export', 'policy', 'socketmap', 'drac', 'whoson', 'feed', 'push_to', 'push_key_id', 'push_key', 'http', 'usage_log'] as const;
const RELOADABLE_SUBKEYS: Partial<Record<string, readonly string[]>> = { smtp: ['tls_cert', 'tls_key'], policy: ['restrictions'] };

export function restartKeys(before: Config, after: Config): string[] {
  const out: string[] = [];
  for (const k of RESTART_KEYS) {
    const a = (before as unknown as Record<string, unknown>)[k];
    const b = (after as unknown as Record<string, unknown>)[k];
    const skip = RELOADABLE_SUBKEYS[k];
    const strip = (v: unknown) => (skip && v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).filter(([sk]) => !skip.includes(sk))) : v);
    if (JSON.stringify(strip(a)) !== JSON.stringify(strip(b))) out.push(k);
  }
  return out;
}
