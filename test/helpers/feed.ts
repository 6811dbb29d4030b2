// Helpers for the signed HTTP feed tests: curl requests (signed with the project's signer, or with a
// forged/old/replayed signature), a self-signed certificate made by openssl, and a logger whose lines the
// test can read. Loopback only, IP literals only; every command is bounded in time (curl --max-time,
// run()'s kill timer).
import { Writable } from 'node:stream';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createLogger, type Logger } from '../../src/log/logger.ts';
import { signRequest } from '../../src/feeds/hmac.ts';
import { pollFor, run, runOk, waitExit, type RunResult } from './proc.ts';

export interface CurlAnswer {
  status: number;
  body: string;
  json: unknown;
}

/** `curl` a request and return the HTTP status and body (status 0: curl itself failed, body = its error). */
export async function curlFeed(url: string, o: { headers?: Record<string, string>; body?: string; bodyFile?: string; method?: string; cacert?: string; extra?: string[] } = {}): Promise<CurlAnswer> {
  const args = ['-sS', '-g', '--max-time', '10', '-o', '-', '-w', '\n%{http_code}', '-X', o.method ?? 'POST'];
  for (const [k, v] of Object.entries(o.headers ?? {})) args.push('-H', `${k}: ${v}`);
  if (o.bodyFile !== undefined) args.push('--data-binary', `@${o.bodyFile}`);
  else if (o.body !== undefined) args.push('--data-binary', o.body);
  if (o.cacert !== undefined) args.push('--cacert', o.cacert);
  args.push(...(o.extra ?? []), url);
  const r = await run('curl', args, { timeoutMs: 15_000 });
  if (r.code !== 0) return { status: 0, body: r.stderr.trim(), json: undefined };
  const cut = r.stdout.lastIndexOf('\n');
  const body = r.stdout.slice(0, cut);
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    json = undefined;
  }
  return { status: Number(r.stdout.slice(cut + 1)), body, json };
}

/** Headers of a correctly signed request (the signer under test; the signature test pins it to openssl). */
export function signedHeaders(keyId: string, secret: string, body: string, o: { now?: number; nonce?: string; path?: string } = {}): Record<string, string> {
  return signRequest({ keyId, secret, path: o.path ?? '/v1/logins', body, now: o.now ?? Date.now(), ...(o.nonce === undefined ? {} : { nonce: o.nonce }) });
}

/** A self-signed EC certificate for `ip` (subjectAltName IP:ip), written to dir/cert.pem and dir/key.pem. */
export async function selfSignedCert(dir: string, ip: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  await runOk('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', `/CN=${ip}`, '-addext', `subjectAltName=IP:${ip}`, '-keyout', key, '-out', cert,
  ], { timeoutMs: 20_000 });
  return { cert, key };
}

/** A logger writing JSON lines into memory, and a reader of those lines. */
export function memoryLogger(level: 'debug' | 'info' = 'debug'): { logger: Logger; events: () => Array<Record<string, unknown>> } {
  let out = '';
  const stream = new Writable({
    write(chunk, _enc, cb) {
      out += String(chunk);
      cb();
    },
  });
  const logger = createLogger({ destination: stream, level });
  const events = () =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { logger, events };
}

export async function writeBody(dir: string, name: string, body: string): Promise<string> {
  const f = join(dir, name);
  await writeFile(f, body);
  return f;
}

// ---------------------------------------------------------------------------------------------------------
// The real daemon as a child process: `relaygate run -c FILE`, its pino lines collected.

const ROOT = join(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'src/main.ts');
const TSX = import.meta.resolve('tsx');

/** `relaygate ARGS` to completion (CLI commands), bounded in time. */
export function relaygateCli(args: string[], cwd: string, timeoutMs = 30_000): Promise<RunResult> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['--import', TSX, MAIN, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      fail(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      done({ code, signal, stdout, stderr });
    });
  });
}

export class RelaygateProcess {
  out = '';
  private constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    child.stdout?.on('data', (d: Buffer) => (this.out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.out += d.toString()));
  }

  /** Starts `relaygate run -c config` and waits (bounded) for its "components" line. */
  static async start(name: string, config: string, cwd: string, timeoutMs = 30_000): Promise<RelaygateProcess> {
    const child = spawn(process.execPath, ['--import', TSX, MAIN, 'run', '-c', config], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const d = new RelaygateProcess(name, child);
    const up = await pollFor(() => (d.exited() ? false : d.has('components') ? true : undefined), timeoutMs, 50);
    if (up !== true) {
      if (!d.exited()) child.kill('SIGKILL');
      throw new Error(`relaygate ${name} did not start (${d.exited() ? `exited ${child.exitCode ?? child.signalCode}` : `no "components" line within ${timeoutMs} ms`}):\n${d.out.slice(-4000)}`);
    }
    return d;
  }

  exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  events(event?: string): Array<Record<string, unknown>> {
    const ev: Array<Record<string, unknown>> = [];
    for (const l of this.out.split('\n')) {
      if (!l.startsWith('{')) continue;
      try {
        const e = JSON.parse(l) as Record<string, unknown>;
        if (event === undefined || e.event === event) ev.push(e);
      } catch {
        /* a partial line */
      }
    }
    return ev;
  }

  has(event: string, pred: (e: Record<string, unknown>) => boolean = () => true): boolean {
    return this.events(event).some(pred);
  }

  /** Waits (bounded) for a log line with this event; fails with the process's output. */
  async waitFor(event: string, pred: (e: Record<string, unknown>) => boolean = () => true, timeoutMs = 15_000): Promise<Record<string, unknown>> {
    const e = await pollFor(() => this.events(event).find(pred), timeoutMs, 50);
    if (e === undefined) throw new Error(`relaygate ${this.name}: no ${event} line within ${timeoutMs} ms:\n${this.out.slice(-3000)}`);
    return e;
  }

  /** SIGTERM and wait (bounded); returns the exit code (null: had to be killed). */
  async stop(timeoutMs = 15_000): Promise<number | null> {
    if (!this.exited()) {
      this.child.kill('SIGTERM');
      if (!(await waitExit(this.child, timeoutMs))) {
        this.child.kill('SIGKILL');
        await waitExit(this.child, 5_000);
        return null;
      }
    }
    return this.child.exitCode;
  }
}
