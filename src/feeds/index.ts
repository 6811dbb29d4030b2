// feeds/: network feed servers that turn logins reported by other hosts into grants: the DRAC-compatible
// RPC server and the whoson server. startConfiguredFeeds() is what `relaygate run` calls: it starts the
// ones that have a listener address ([drac] listen_udp / listen_tcp, [whoson] listen) and returns one
// stop() for all of them.
// Security: the configuration was validated by feedConfigProblems() before this runs (loopback unless
// an allow list says otherwise); each server checks every caller against its allow list.

import type { Config } from '../config/index.ts';
import type { AccessMap } from '../store/index.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log/logger.ts';
import { RelaygateError } from '../errors.ts';
import { allowSet, readDracAllow } from './allow.ts';
import { parseListeners, dracEnabled, whosonEnabled } from './config.ts';
import { startDracServer, type DracServer } from './drac.ts';
import { startWhosonServer, type WhosonServer } from './whoson.ts';

export { startDracServer, type DracServer, type DracServerOptions, DRAC_PROG, AddStat } from './drac.ts';
export { startWhosonServer, type WhosonServer, type WhosonServerOptions } from './whoson.ts';
export { feedConfigProblems, dracEnabled, whosonEnabled } from './config.ts';

/** Is any of the servers started here configured (a listener address in [drac] or [whoson])? */
export function networkFeedsConfigured(config: Config): boolean {
  return dracEnabled(config.drac) || whosonEnabled(config.whoson);
}

export interface RunningFeeds {
  readonly drac: DracServer | undefined;
  readonly whoson: WhosonServer | undefined;
  /** names for the start-up summary line, e.g. `drac udp 127.0.0.1:40211` */
  readonly describe: string[];
  stop(): Promise<void>;
}

function must<T>(problems: string[], value: T): T {
  if (problems.length > 0) throw new RelaygateError('RG_ERR_CONFIG_INVALID', 'feeds: invalid listener address', { details: problems });
  return value;
}

export async function startConfiguredFeeds(o: { config: Config; map: AccessMap; logger: Logger; clock: Clock }): Promise<RunningFeeds> {
  const { config } = o;
  let drac: DracServer | undefined;
  let whoson: WhosonServer | undefined;
  const describe: string[] = [];
  try {
    if (dracEnabled(config.drac)) {
      const d = config.drac;
      const problems: string[] = [];
      const listenUdp = parseListeners('drac.listen_udp', d.listen_udp ?? [], problems);
      const listenTcp = must(problems, parseListeners('drac.listen_tcp', d.listen_tcp ?? [], problems));
      const fromFile = d.allow_file === undefined ? [] : (await readDracAllow(d.allow_file)).entries;
      const configured = d.allow_file === undefined && d.allow === undefined ? undefined : [...(d.allow ?? []), ...fromFile];
      drac = await startDracServer({
        listenUdp,
        listenTcp,
        allow: allowSet(configured, 'drac.allow'),
        rpcbind: d.rpcbind,
        rateLimit: d.rate_limit,
        map: o.map,
        logger: o.logger,
        clock: o.clock,
      });
      for (const a of drac.udp) describe.push(`drac udp ${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`);
      for (const a of drac.tcp) describe.push(`drac tcp ${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`);
    }
    if (whosonEnabled(config.whoson)) {
      const w = config.whoson;
      const problems: string[] = [];
      const listen = must(problems, parseListeners('whoson.listen', w.listen ?? [], problems));
      whoson = await startWhosonServer({
        listen,
        allowLogin: allowSet(w.allow_login, 'whoson.allow_login'),
        allowQuery: allowSet(w.allow_query, 'whoson.allow_query'),
        rateLimit: w.rate_limit,
        map: o.map,
        logger: o.logger,
        clock: o.clock,
      });
      for (const l of whoson.listeners) describe.push(`whoson ${l.tcp.family === 'IPv6' ? `[${l.tcp.address}]` : l.tcp.address}:${l.tcp.port}`);
    }
  } catch (err) {
    await drac?.stop();
    await whoson?.stop();
    throw err;
  }
  return {
    drac,
    whoson,
    describe,
    async stop() {
      await drac?.stop();
      await whoson?.stop();
    },
  };
}
