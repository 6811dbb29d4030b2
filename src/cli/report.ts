// `relaygate report [--days N] [--all] [--json]`: who still depends on POP-before-SMTP (user, last use,
// count, client IPs), from the usage log the daemon keeps in <data_dir>/usage. `--all` lists every user with
// every relay method. Reads only: safe while the daemon runs (LMDB is multi-process safe); the daemon writes
// its counts every few seconds, so the newest relays may take that long to show.

import { existsSync } from 'node:fs';
import { loadConfig, validateConfig, sunsetOptions } from '../config/index.ts';
import { SunsetPolicy } from '../engine/sunset.ts';
import { RelaygateError } from '../errors.ts';
import { createLogger } from '../log/logger.ts';
import { systemClock } from '../clock.ts';
import { UsageLog, RELAY_METHODS } from '../usage/usage-log.ts';
import { popDependents } from '../usage/report.ts';
import { usagePath } from './runtime.ts';
import { iso, printJson, table } from './output.ts';

export interface ReportOptions {
  config?: string;
  json?: boolean;
  all?: boolean;
  days?: string;
}

export async function reportCommand(opts: ReportOptions): Promise<void> {
  const days = opts.days === undefined ? 30 : Number(opts.days);
  if (!Number.isInteger(days) || days < 1 || days > 3650) throw new RelaygateError('RG_ERR_USAGE', `invalid --days ${JSON.stringify(opts.days)}: a whole number of days, 1 to 3650`);
  const loaded = await loadConfig(opts.config);
  await validateConfig(loaded);
  const { config } = loaded;
  const path = usagePath(config);
  if (!config.usage_log) process.stderr.write('relaygate: usage_log = false in the configuration: nothing new is being recorded\n');
  if (!existsSync(path)) {
    if (opts.json) printJson(opts.all ? { users: [] } : { days, dependents: [] });
    else process.stdout.write(`no usage recorded yet (${path} does not exist: the daemon creates it at its first relay)\n`);
    return;
  }
  const now = systemClock();
  const log = await UsageLog.open(path, { clock: systemClock, logger: createLogger({ level: 'warn', destination: 2 }), flushMs: 0 });
  try {
    const users = log.users();
    if (opts.all) {
      const rows = users.flatMap((u) =>
        RELAY_METHODS.filter((m) => u.methods[m] !== undefined).map((m) => {
          const x = u.methods[m]!;
          return { user: u.user, method: m, first: x.first, last: x.last, count: x.count, ips: x.ips };
        }),
      );
      rows.sort((a, b) => (a.user < b.user ? -1 : a.user > b.user ? 1 : a.method < b.method ? -1 : 1));
      if (opts.json) printJson({ users: rows.map((r) => ({ ...r, first: iso(r.first), last: iso(r.last) })) });
      else process.stdout.write(rows.length === 0 ? 'no relaying recorded\n' : table(['user', 'method', 'last use', 'count', 'client IPs'], rows.map((r) => [r.user, r.method, iso(r.last), String(r.count), r.ips.join(',')])));
      return;
    }
    const sunset = new SunsetPolicy(sunsetOptions(config));
    const deps = popDependents(users, { now, days, sunset });
    if (opts.json) {
      printJson({
        days,
        dependents: deps.map((d) => ({
          user: d.user,
          lastPop: iso(d.lastPop),
          firstPop: iso(d.firstPop),
          count: d.popCount,
          ips: d.ips,
          lastSasl: d.lastSasl === null ? null : iso(d.lastSasl),
          sunset: d.sunset === null ? null : { key: d.sunset.key, date: d.sunset.date },
        })),
      });
      return;
    }
    if (deps.length === 0) {
      process.stdout.write(`nobody relayed on POP-before-SMTP in the last ${days} days\n`);
      return;
    }
    process.stdout.write(`${deps.length} user(s) relayed on POP-before-SMTP in the last ${days} days:\n`);
    process.stdout.write(
      table(
        ['user', 'last POP-before-SMTP', 'count', 'client IPs', 'last SMTP AUTH', 'sunset'],
        deps.map((d) => [d.user, iso(d.lastPop), String(d.popCount), d.ips.join(','), d.lastSasl === null ? 'never' : iso(d.lastSasl), d.sunset === null ? '-' : `${d.sunset.date} (${d.sunset.key})`]),
      ),
    );
  } finally {
    await log.close();
  }
}
