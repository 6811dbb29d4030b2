// Logging: pino JSON lines to stdout (one object per event), secrets redacted.
//
// Operators grep these lines, so field names are snake_case and stable. Decision lines carry a `msg`
// shaped like Postfix's smtpd log (see decision-line.ts) so existing habits and fail2ban filters apply.
// Security: anything named like a password, secret or token is replaced by [redacted] wherever it appears
// in the first two levels of a logged object.

import { pino, type Logger as PinoLogger, type LevelWithSilent } from 'pino';

export type Logger = PinoLogger;
export type LogLevel = LevelWithSilent;

export const REDACT_PATHS = [
  'password',
  'pass',
  'secret',
  'token',
  'key',
  'authorization',
  '*.password',
  '*.pass',
  '*.secret',
  '*.token',
  '*.key',
  '*.authorization',
];

export interface LoggerOptions {
  level?: LogLevel;
  /** where lines go; defaults to stdout (fd 1) */
  destination?: NodeJS.WritableStream | number;
  name?: string;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const dest = opts.destination ?? 1;
  const stream = typeof dest === 'number' ? pino.destination({ dest, sync: true }) : dest;
  return pino(
    {
      name: opts.name ?? 'relaygate',
      level: opts.level ?? 'info',
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    stream,
  );
}

/** A logger that drops everything: for tests and library use where no output is wanted. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
