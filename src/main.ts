// The `relaygate` command: run the daemon, ask the engine, inspect the map, check the configuration.
//
// Every command takes -c FILE (default ./relaygate.toml if present, else built-in defaults). Errors print
// their stable code and how to fix it, and exit with the catalog's status (78 for configuration, 73 for
// a store that cannot open, 64 for usage). `check` exits 0 permit / 1 reject / 2 defer.
// Security: arguments are untrusted; IPs go through normalizeIp() before any use.

import { Command, CommanderError, Option } from 'commander';
import { ERROR_CATALOG, RelaygateError, isRelaygateError } from './errors.ts';
import { runCommand } from './cli/run.ts';
import { checkCommand } from './cli/check.ts';
import { mapCommand } from './cli/map.ts';
import { configCheckCommand, configShowCommand } from './cli/config.ts';
import { testLogCommand } from './cli/test-log.ts';
import { reportCommand } from './cli/report.ts';
import { VERSION } from './version.ts';

export function buildProgram(): Command {
  const program = new Command('relaygate')
    .description('Decides who may relay mail: POP-before-SMTP grants and SMTP AUTH in one engine.')
    .version(VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  const configOpt = () => new Option('-c, --config <file>', 'configuration file (default: ./relaygate.toml if present, else built-in defaults)');

  program
    .command('run')
    .description('run the daemon in the foreground (store, sweeper, and every source and front end the config enables)')
    .addOption(configOpt())
    .option('--stdin-format <format>', 'also read log lines from standard input in this format (e.g. dovecot)')
    .option('--stdin-prefix <prefix>', 'line prefix of the standard input lines: syslog, rfc3339, logpath, tai64n, none', 'syslog')
    .action(async (opts) => runCommand(opts));

  program
    .command('check')
    .description('print the verdict and trace the engine gives a hypothetical request (exit 0 permit, 1 reject, 2 defer)')
    .addOption(configOpt())
    .requiredOption('--client <ip>', 'client IP address')
    .requiredOption('--rcpt <address>', 'envelope recipient')
    .option('--sender <address>', 'envelope sender (default: the null sender <>)', '')
    .option('--sasl-user <user>', 'SASL login of the client, if it authenticated')
    .option('--helo <name>', 'HELO/EHLO name', 'unknown')
    .option('--json', 'print JSON')
    .action(async (opts) => checkCommand(opts));

  program
    .command('test-log <file>')
    .description('show what each line of a log yields (grant with ip and user, or why not), like fail2ban-regex; FILE may be - for stdin; exit 1 when nothing matched')
    .requiredOption('--format <name>', 'log format (dovecot, courier, cyrus, ...)')
    .option('--prefix <prefix>', 'line prefix: syslog, rfc3339, logpath, tai64n, none', 'syslog')
    .option('--ident <idents>', "comma-separated syslog idents replacing the format's defaults")
    .option('--pattern <regex>', 'an extra anchored pattern of your own, tried first (as [[watch]] pattern)')
    .option('--json', 'print JSON lines')
    .option('--verbose', 'print every line, not only those that yield something')
    .action(async (file: string, opts) => testLogCommand({ ...opts, file }));

  const map = program.command('map').description('inspect and change the access map (works while the daemon runs)');
  map
    .command('list')
    .description('list unexpired grants')
    .addOption(configOpt())
    .option('--json', 'print JSON')
    .action(async (opts) => mapCommand('list', undefined, opts));
  map
    .command('query <ip>')
    .description('show the grant for an IP (exit 1 when there is none)')
    .addOption(configOpt())
    .option('--json', 'print JSON')
    .action(async (ip: string, opts) => mapCommand('query', ip, opts));
  map
    .command('add <ip>')
    .description('record a grant by hand, as if the IP had just logged in')
    .addOption(configOpt())
    .option('--user <user>', 'login name to attach to the grant')
    .option('--ttl <duration>', 'lifetime (seconds or 30m/2h/1d; default: grace)')
    .option('--json', 'print JSON')
    .action(async (ip: string, opts) => mapCommand('add', ip, opts));
  map
    .command('del <ip>')
    .description('remove the grant for an IP (exit 1 when there was none)')
    .addOption(configOpt())
    .option('--json', 'print JSON')
    .action(async (ip: string, opts) => mapCommand('del', ip, opts));
  map
    .command('stats')
    .description('counts and sweep statistics')
    .addOption(configOpt())
    .option('--json', 'print JSON')
    .action(async (opts) => mapCommand('stats', undefined, opts));

  program
    .command('report')
    .description('who still relays on POP-before-SMTP (user, last use, count, client IPs, SMTP AUTH use, sunset)')
    .addOption(configOpt())
    .option('--days <n>', 'look back this many days', '30')
    .option('--all', 'every user with every relay method (SASL, POP-before-SMTP, mynetworks)')
    .option('--json', 'print JSON')
    .action(async (opts) => reportCommand(opts));

  const config = program.command('config').description('validate or show the configuration');
  config
    .command('check [file]')
    .description('validate a configuration file completely (every problem listed); exit 0 when valid, 78 otherwise')
    .addOption(configOpt())
    .action(async (file: string | undefined, opts: { config?: string }) => configCheckCommand(file ?? opts.config));
  config
    .command('show')
    .description('print the settings that differ from the defaults (like postconf -n)')
    .addOption(configOpt())
    .option('--all', 'print every setting, defaults included')
    .option('--defaults', 'print the commented template of every option (contrib/relaygate.toml)')
    .action(async (opts) => configShowCommand(opts));

  return program;
}

/** Prints an error the way operators need it: code, message, each detail, and the fix. */
export function reportError(err: unknown): number {
  if (isRelaygateError(err)) {
    process.stderr.write(`relaygate: ${err.code}: ${err.message}\n`);
    for (const d of err.details) process.stderr.write(`  ${d.replace(/\n/g, '\n  ')}\n`);
    process.stderr.write(`  fix: ${ERROR_CATALOG[err.code].fix}\n`);
    return err.exitCode;
  }
  process.stderr.write(`relaygate: RG_ERR_INTERNAL: ${(err as Error)?.stack ?? String(err)}\n`);
  return ERROR_CATALOG.RG_ERR_INTERNAL.exit;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here with code 0; usage errors were already printed by commander.
      return err.exitCode === 0 ? 0 : ERROR_CATALOG.RG_ERR_USAGE.exit;
    }
    return reportError(err);
  }
}

export { RelaygateError };

const invokedDirectly = process.argv[1] !== undefined && /(?:^|[\\/])(?:main\.(?:ts|js)|relaygate(?:\.js)?)$/.test(process.argv[1]);
if (invokedDirectly) {
  const code = await main(process.argv);
  // `run` keeps the event loop alive itself and exits on SIGTERM; one-shot commands end here.
  if (code !== 0 || process.argv[2] !== 'run') process.exit(code);
}
