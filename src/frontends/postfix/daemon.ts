// The Postfix front ends as `relaygate run` starts them: the policy service when `[policy] listen` is set,
// the socketmap server when `[socketmap] listen` is set, and one stop() for both. Kept here so
// src/cli/run.ts only calls start and stop.
// Security: nothing listens before the configuration validated (validate.ts ran postfixFrontendProblems and
// compiled the policy list); a listener that cannot bind closes what was opened and the daemon exits.

import type { Clock } from '../../clock.ts';
import type { Config } from '../../config/index.ts';
import { createEngine, type Engine, type GrantLookup } from '../../engine/index.ts';
import type { UsageSink } from '../../engine/types.ts';
import { SunsetPolicy } from '../../engine/sunset.ts';
import { SwitchableEngine } from '../../engine/switchable.ts';
import { sunsetOptions } from '../../config/index.ts';
import { RelaygateError } from '../../errors.ts';
import type { Logger } from '../../log/logger.ts';
import { CidrSet } from '../../net/index.ts';
import { openTable, type LookupTable } from '../../tables/index.ts';
import { policyEngineOptions } from './config.ts';
import { parseListen, parseSocketMode } from './listen.ts';
import { startPolicyService, type PolicyService } from './policy.ts';
import { startSocketmap, type SocketmapServer } from './socketmap.ts';

export interface RunningPostfixFrontends {
  readonly policy: PolicyService | undefined;
  readonly socketmap: SocketmapServer | undefined;
  /** the listen addresses, for the daemon's start line */
  describe(): string[];
  /** SIGHUP: the policy service answers from `config`'s [policy] restrictions, sunset and networks from now on */
  reload(config: Config, mynetworks: CidrSet): Promise<void>;
  stop(graceMs?: number): Promise<void>;
}

function spec(section: string, text: string) {
  const s = parseListen(text, { allowPortZero: true });
  if (typeof s === 'string') throw new RelaygateError('RG_ERR_CONFIG_INVALID', `${section}.listen: ${s}`);
  return s;
}

/** undefined when neither [policy] listen nor [socketmap] listen is set. */
export async function startPostfixFrontends(o: {
  config: Config;
  mynetworks: CidrSet;
  grants: GrantLookup;
  logger: Logger;
  clock: Clock;
  /** the daemon's usage log: policy OKs count as relays, as the gateway's permits do */
  usage?: UsageSink | undefined;
}): Promise<RunningPostfixFrontends | undefined> {
  const { config, logger, clock } = o;
  const p = config.policy;
  const s = config.socketmap;
  if (p.listen === undefined && s.listen === undefined) return undefined;
  let engine: SwitchableEngine | undefined;
  let policy: PolicyService | undefined;
  const policyLogger = logger.child({ component: 'policy' });
  const buildPolicyEngine = (c: Config, mynetworks: CidrSet): Promise<Engine> =>
    // a grant past its sunset date no longer answers OK
    createEngine(policyEngineOptions(c, { mynetworks, grants: o.grants, clock, logger: policyLogger, sunset: new SunsetPolicy(sunsetOptions(c)), usage: o.usage }));
  let socketmap: SocketmapServer | undefined;
  const tables: LookupTable[] = [];
  try {
    if (p.listen !== undefined) {
      engine = new SwitchableEngine(await buildPolicyEngine(config, o.mynetworks));
      policy = await startPolicyService({
        listen: spec('policy', p.listen),
        clients: new CidrSet(p.clients, 'policy.clients'),
        socketMode: parseSocketMode(p.socket_mode) ?? 0o666,
        engine,
        tempfailAction: p.tempfail_action,
        prependHeader: p.prepend_header,
        logger: policyLogger,
      });
    }
    if (s.listen !== undefined) {
      for (const t of config.sender_login_maps) tables.push(await openTable(t));
      socketmap = await startSocketmap({
        listen: spec('socketmap', s.listen),
        clients: new CidrSet(s.clients, 'socketmap.clients'),
        socketMode: parseSocketMode(s.socket_mode) ?? 0o666,
        grants: o.grants,
        clock,
        grantMap: s.grant_map,
        grantAction: s.grant_action,
        senderLoginMap: s.sender_login_map,
        senderLoginTables: tables,
        logger: logger.child({ component: 'socketmap' }),
      });
    }
  } catch (err) {
    await policy?.close(0);
    await socketmap?.close(0);
    await engine?.close();
    await Promise.allSettled(tables.map((t) => t.close()));
    throw err;
  }
  let stopped: Promise<void> | undefined;
  return {
    policy,
    socketmap,
    async reload(c: Config, mynetworks: CidrSet) {
      if (engine === undefined || c.policy.listen === undefined) return;
      engine.swap(await buildPolicyEngine(c, mynetworks));
    },
    describe: () => [...(policy ? [`policy ${policy.address}`] : []), ...(socketmap ? [`socketmap ${socketmap.address}`] : [])],
    stop(graceMs = 2000) {
      stopped ??= (async () => {
        await Promise.all([policy?.close(graceMs), socketmap?.close(graceMs)]);
        await engine?.close();
        await Promise.allSettled(tables.map((t) => t.close()));
      })();
      return stopped;
    },
  };
}
