// Test helpers for auth/: password hashes made by the real tools, and a logger whose lines a test can read.
//
// Debian packages: dovecot-core (doveadm pw), whois (mkpasswd), apache2-utils (htpasswd).
// Every command is bounded in time (test/helpers/proc.ts run(): SIGKILL after 20 s by default).
import { Writable } from 'node:stream';
import { runOk } from '../helpers/proc.ts';
import { createLogger, type Logger } from '../../src/log/logger.ts';

/** `{SCHEME}...` from Dovecot's own `doveadm pw` (no config file read: -O). */
export async function doveadmPw(scheme: string, password: string, rounds?: number): Promise<string> {
  const args = ['-O', 'pw', '-s', scheme, ...(rounds !== undefined ? ['-r', String(rounds)] : [])];
  // doveadm asks for the password and a retype on stdin (keeps it off the command line)
  const r = await runOk('doveadm', args, { input: `${password}\n${password}\n`, timeoutMs: 60_000 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (!line.startsWith(`{${scheme}}`)) throw new Error(`doveadm pw -s ${scheme}: unexpected output ${JSON.stringify(r.stdout)}`);
  return line;
}

/** crypt(3) string from Debian's `mkpasswd -m METHOD` (package whois). */
export async function mkpasswd(method: string, password: string): Promise<string> {
  const r = await runOk('mkpasswd', ['-m', method, '--stdin'], { input: `${password}\n` });
  return r.stdout.trim();
}

/** bcrypt (`$2y$`) from Apache's `htpasswd -nbB` (package apache2-utils); the hash part only. */
export async function htpasswdBcrypt(password: string, cost = 5): Promise<string> {
  const r = await runOk('htpasswd', ['-niB', '-C', String(cost), 'user'], { input: `${password}\n` });
  const line = r.stdout.trim();
  return line.slice(line.indexOf(':') + 1);
}

export interface CapturedLog {
  readonly logger: Logger;
  /** parsed JSON lines so far */
  lines(): Array<Record<string, unknown>>;
  /** raw text so far */
  text(): string;
}

export function captureLogger(level: 'debug' | 'info' = 'debug'): CapturedLog {
  let text = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text += chunk.toString();
      cb();
    },
  });
  const logger = createLogger({ level, destination: sink });
  return {
    logger,
    text: () => text,
    lines: () =>
      text
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
