// The gateway as `relaygate run` starts it: the configured SASL backend (src/auth createBackend) plus
// startGateway(), and one stop() that closes both. Kept here so src/cli/run.ts only calls start and stop.
// Security: nothing is listening until the backend options validated and the gateway configuration passed
// gatewayConfigProblems(); a failure closes whatever was opened and is rethrown (the daemon exits).

import type { Clock } from '../../clock.ts';
import type { Config } from '../../config/index.ts';
import type { Engine, GrantLookup } from '../../engine/index.ts';
import type { Logger } from '../../log/logger.ts';
import { createBackend, type SaslBackend } from '../../auth/index.ts';
import { startGateway, type Gateway } from './gateway.ts';

/** How long `relaygate run` lets SMTP sessions finish on SIGTERM before answering them 421. */
export const STOP_GRACE_MS = 10_000;

export interface RunningGateway {
  readonly gateway: Gateway;
  reloadTls(): Promise<void>;
  /** SIGHUP: re-reads the SASL backend's files (passwd-file); true when there was nothing to do or it worked */
  reloadAuth(): Promise<boolean>;
  stop(graceMs?: number): Promise<void>;
}

export async function startConfiguredGateway(o: { config: Config; engine: Engine; grants: GrantLookup; logger: Logger; clock: Clock }): Promise<RunningGateway> {
  const a = o.config.auth;
  let backend: SaslBackend | undefined;
  if (a.backend !== undefined && a.path !== undefined) {
    backend = await createBackend({
      backend: a.backend,
      path: a.path,
      timeoutMs: a.timeout * 1000,
      service: a.service,
      realm: a.realm,
      logger: o.logger,
      clock: o.clock,
    });
  }
  let gateway: Gateway;
  try {
    gateway = await startGateway({ config: o.config, engine: o.engine, grants: o.grants, authBackend: backend, logger: o.logger, clock: o.clock, dataDir: o.config.data_dir });
  } catch (err) {
    await backend?.close();
    throw err;
  }
  return {
    gateway,
    reloadTls: () => gateway.reloadTls(),
    reloadAuth: async () => (backend?.reload === undefined ? true : backend.reload()),
    async stop(graceMs = STOP_GRACE_MS) {
      await gateway.stop(graceMs);
      await backend?.close();
    },
  };
}
