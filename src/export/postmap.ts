// Running Postfix's own postmap(1): finding the binary, asking postconf(1) which table types this Postfix
// has, and one bounded postmap run with its input on stdin.
//
// Why postmap and not a library: Postfix reads lmdb tables with MDB_NOLOCK under its own fcntl lock, and
// the npm lmdb binary writes a format Postfix's liblmdb rejects (shared/reference/protocols.md §4); postmap
// writes every table type with Postfix's locking, so a table it wrote is one Postfix can read.
//
// postmap exit status: 0 = done; 1 = fatal error, but also `-d` when none of the keys was in the table
// (postmap(1): "The exit status is zero when at least one of the requested keys was found"). A fatal
// error always prints `postmap: fatal: ...`, so the two are told apart by that line.
//
// Security: the binary path comes from configuration or PATH/sbin; arguments are passed as an argv array
// (no shell); the input lines are built by the exporter from checked keys and values only.

import { spawn } from 'node:child_process';
import { access, stat } from 'node:fs/promises';
import { constants as fsc } from 'node:fs';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import { RelaygateError } from '../errors.ts';

/** Where postmap is looked for after $PATH: Debian and most systems install it in /usr/sbin. */
export const SBIN_DIRS = ['/usr/sbin', '/usr/local/sbin', '/sbin'];

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    const st = await stat(path);
    if (!st.isFile()) return false;
    await access(path, fsc.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The postmap binary to run: `[export] postmap` when set (must exist and be executable), else the first
 * `postmap` on $PATH, then in /usr/sbin, /usr/local/sbin, /sbin. Throws RG_ERR_POSTMAP naming what was tried.
 */
export async function resolvePostmap(configured: string | undefined, envPath: string | undefined = process.env.PATH): Promise<string> {
  if (configured !== undefined) {
    const path = isAbsolute(configured) ? configured : resolve(configured);
    let why = '';
    try {
      const st = await stat(path);
      if (!st.isFile()) why = 'is not a file';
      else await access(path, fsc.X_OK).catch(() => (why = 'is not executable by this user'));
    } catch {
      why = 'does not exist';
    }
    if (why !== '') {
      throw new RelaygateError(
        'RG_ERR_POSTMAP',
        `[export] postmap = ${JSON.stringify(configured)}: ${path} ${why}; install Postfix (Debian: apt-get install postfix) or point [export] postmap at its postmap binary (postconf -h command_directory shows where it lives)`,
      );
    }
    return path;
  }
  const dirs = [...(envPath ?? '').split(delimiter).filter((d) => d !== '' && isAbsolute(d)), ...SBIN_DIRS];
  const tried: string[] = [];
  for (const d of dirs) {
    const candidate = join(d, 'postmap');
    if (tried.includes(candidate)) continue;
    tried.push(candidate);
    if (await isExecutableFile(candidate)) return candidate;
  }
  throw new RelaygateError(
    'RG_ERR_POSTMAP',
    `[export] is enabled but no executable postmap was found (tried ${tried.join(', ')}); install Postfix (Debian: apt-get install postfix) or set [export] postmap to the path of its postmap binary`,
  );
}

export interface PostmapRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
  /** the run was killed after the timeout */
  readonly timedOut: boolean;
}

/** Output kept from a run: enough for an error message, bounded so a chatty program cannot grow memory. */
const MAX_OUTPUT = 64 * 1024;

/** Runs `bin args` with `input` on stdin; never rejects for a non-zero exit (the caller reads code/stderr). */
export function runProgram(bin: string, args: readonly string[], input: string, timeoutMs: number): Promise<PostmapRun> {
  const started = performance.now();
  return new Promise((resolvePromise, reject) => {
    const child = spawn(bin, [...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      if (stdout.length < MAX_OUTPUT) stdout += d;
    });
    child.stderr.on('data', (d: string) => {
      if (stderr.length < MAX_OUTPUT) stderr += d;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr, ms: performance.now() - started, timedOut });
    });
    // EPIPE when postmap dies before reading everything: its exit status and stderr tell why.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

/** True when a postmap run failed (as opposed to `-d` finding none of its keys). */
export function postmapFailed(r: PostmapRun, deleting: boolean): boolean {
  if (r.timedOut || r.signal !== null) return true;
  if (r.code === 0) return false;
  if (deleting && r.code === 1 && !/\b(fatal|panic|error):/.test(r.stderr)) return false;
  return true;
}

/** A one-line account of a failed run, for logs and errors. */
export function describeRun(r: PostmapRun): string {
  if (r.timedOut) return `killed after the timeout`;
  const status = r.signal !== null ? `killed by ${r.signal}` : `exit status ${r.code}`;
  const text = r.stderr.trim().split('\n').slice(-3).join(' / ');
  return text === '' ? status : `${status}: ${text}`;
}

/**
 * The table types this Postfix supports (`postconf -m`, run from postmap's directory), or undefined when
 * there is no postconf beside postmap or it fails (then the first postmap run reports an unsupported type).
 */
export async function supportedTypes(postmap: string, configDirectory: string | undefined, timeoutMs = 10_000): Promise<Set<string> | undefined> {
  const postconf = join(dirname(postmap), 'postconf');
  if (!(await isExecutableFile(postconf))) return undefined;
  try {
    const r = await runProgram(postconf, [...(configDirectory === undefined ? [] : ['-c', configDirectory]), '-m'], '', timeoutMs);
    if (r.code !== 0) return undefined;
    return new Set(r.stdout.split('\n').map((l) => l.trim()).filter((l) => l !== ''));
  } catch {
    return undefined;
  }
}
