// Small process utilities shared by the real-daemon test helpers (Dovecot, rsyslog, ...).
// Everything here is bounded in time: no helper waits forever.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run a command to completion (no shell), killing it after `timeoutMs`. */
export function run(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 20_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.on('error', () => undefined); // EPIPE when the command does not read its input
    child.stdin.end(opts.input ?? '');
  });
}

/** Like run() but throws unless the exit status is 0. */
export async function runOk(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.code ?? r.signal}: ${r.stderr.trim() || r.stdout.trim()}`);
  }
  return r;
}

/** Resolves when the child has exited, or after `timeoutMs` with false. */
export function waitExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, timeoutMs);
    const onExit = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

/** Is a process with this pid alive? */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Poll `check` every `intervalMs` until it returns a value (not undefined), at most `timeoutMs`. */
export async function pollFor<T>(check: () => Promise<T | undefined> | T | undefined, timeoutMs: number, intervalMs = 50): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 100_000 && Date.now() < deadline; i++) {
    const v = await check();
    if (v !== undefined) return v;
    await sleep(intervalMs);
  }
  return undefined;
}

function listenOnce(host: string, port: number): Promise<net.Server | null> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(null));
    srv.listen({ host, port, exclusive: true, ipv6Only: host.includes(':') }, () => resolve(srv));
  });
}

/**
 * A TCP port that is free on every host in `hosts` right now (bind port 0 on the first host, then check the others).
 * Racy by nature: the caller starts its server on it and retries with a new port when the bind fails.
 */
export async function freePort(hosts: string[] = ['127.0.0.1', '::1'], attempts = 20): Promise<number> {
  const [first, ...rest] = hosts;
  if (first === undefined) throw new Error('freePort: no hosts');
  for (let i = 0; i < attempts; i++) {
    const a = await listenOnce(first, 0);
    if (!a) continue;
    const port = (a.address() as net.AddressInfo).port;
    const others: net.Server[] = [];
    let ok = true;
    for (const h of rest) {
      const s = await listenOnce(h, port);
      if (!s) {
        ok = false;
        break;
      }
      others.push(s);
    }
    await Promise.all([a, ...others].map((s) => new Promise<void>((r) => s.close(() => r()))));
    if (ok) return port;
  }
  throw new Error(`freePort: no port free on ${hosts.join(', ')} after ${attempts} attempts`);
}

/** Several distinct free ports. */
export async function freePorts(n: number, hosts?: string[]): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < 50 && out.length < n; i++) {
    const p = await freePort(hosts);
    if (!out.includes(p)) out.push(p);
  }
  if (out.length < n) throw new Error('freePorts: could not find distinct ports');
  return out;
}
