// `relaygate map list|query|add|del|stats`: the operator's view of the access map.
// LMDB is multi-process safe, so these work while the daemon runs. Security: IPs are normalized (and
// junk refused with RG_ERR_BAD_ADDRESS) before they reach the store; `add` obeys mynetworks/never_authorize.

import { requireIp } from '../net/index.ts';
import { parseDuration } from '../config/index.ts';
import { RelaygateError } from '../errors.ts';
import { createLogger } from '../log/logger.ts';
import { openRuntime } from './runtime.ts';
import { GRANT_HEADER, grantJson, grantLine, iso, printJson, table } from './output.ts';

export interface MapOptions {
  config?: string;
  json?: boolean;
  user?: string;
  ttl?: string;
}

export async function mapCommand(action: 'list' | 'query' | 'add' | 'del' | 'stats', ipArg: string | undefined, opts: MapOptions): Promise<void> {
  // Validate arguments before opening anything.
  const ip = ipArg === undefined ? undefined : requireIp(ipArg, 'client IP');
  let ttl: number | undefined;
  if (opts.ttl !== undefined) {
    ttl = parseDuration(opts.ttl);
    if (ttl === undefined || ttl < 1) throw new RelaygateError('RG_ERR_USAGE', `invalid --ttl ${JSON.stringify(opts.ttl)}: expected seconds or 30m/2h/1d`);
  }
  if (opts.user !== undefined && (opts.user === '' || /[\x00-\x1f\x7f]/.test(opts.user))) {
    throw new RelaygateError('RG_ERR_USAGE', 'invalid --user: must be non-empty and contain no control characters');
  }
  const rt = await openRuntime(opts.config, createLogger({ level: 'warn', destination: 2 }));
  try {
    const now = rt.clock();
    switch (action) {
      case 'list': {
        const grants = await rt.map.list(now);
        if (opts.json) printJson(grants.map(grantJson));
        else process.stdout.write(grants.length === 0 ? 'no grants\n' : table(GRANT_HEADER, grants.map(grantLine)));
        return;
      }
      case 'query': {
        const g = await rt.map.lookup(ip!, now);
        if (opts.json) printJson(g ? grantJson(g) : null);
        else process.stdout.write(g ? table(GRANT_HEADER, [grantLine(g)]) : `${ip}: no grant\n`);
        if (!g) process.exitCode = 1;
        return;
      }
      case 'add': {
        const r = await rt.map.record({ ip: ip!, user: opts.user, source: 'cli', at: now, ttl });
        if (opts.json) printJson(r.recorded ? { recorded: true, grant: grantJson(r.grant) } : r);
        else if (r.recorded) process.stdout.write(`${r.grant.ip}: granted${r.grant.user ? ` to ${r.grant.user}` : ''} until ${iso(r.grant.expires)}\n`);
        else process.stdout.write(`${ip}: not recorded (${r.reason}): ${r.detail}\n`);
        if (!r.recorded) process.exitCode = 1;
        return;
      }
      case 'del': {
        const existed = await rt.map.delete(ip!);
        if (opts.json) printJson({ ip, deleted: existed });
        else process.stdout.write(existed ? `${ip}: deleted\n` : `${ip}: no grant\n`);
        if (!existed) process.exitCode = 1;
        return;
      }
      case 'stats': {
        const s = await rt.map.stats(now);
        if (opts.json) printJson(s);
        else {
          const rows = Object.entries(s).map(([k, v]) => [k, /Expiry$|At$/.test(k) && typeof v === 'number' ? iso(v) : String(v ?? '-')]);
          process.stdout.write(table(['stat', 'value'], rows));
        }
        return;
      }
    }
  } finally {
    await rt.close();
  }
}
