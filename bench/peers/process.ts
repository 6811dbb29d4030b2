// Process plumbing for the smtp benchmark's peers: a free loopback port, waiting for a server's greeting,
// forking a TypeScript child with IPC, one request/reply over IPC, stopping a child, and reading a
// process's resident memory from /proc. Every wait here is bounded in time.
//
// Security: connects only to 127.0.0.1.

import { fork, type ChildProcess } from 'node:child_process';
import { open, readFile } from 'node:fs/promises';
import net from 'node:net';
import { createRequire } from 'node:module';
import { setTimeout as sleep } from 'node:timers/promises';

/** A server the benchmark started. */
export interface Peer {
  readonly name: string;
  readonly pid: number;
  readonly port: number;
  readonly logFile: string;
  /** what the process wrote to stderr so far (the last 20 KB) */
  stderr(): string;
  stop(): Promise<void>;
}

const TSX = createRequire(import.meta.url).resolve('tsx');

/** A port that was free on 127.0.0.1 a moment ago (the greeting check catches the rare race). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** The first line the server at 127.0.0.1:port sends, or an error (bounded by timeoutMs). */
function firstLine(port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (err: Error | undefined, line?: string) => {
      clearTimeout(timer);
      sock.removeAllListeners('data');
      sock.on('error', () => undefined);
      sock.end('QUIT\r\n');
      setTimeout(() => sock.destroy(), 200).unref();
      if (err) reject(err);
      else resolve(line!);
    };
    const timer = setTimeout(() => done(new Error('no greeting')), timeoutMs);
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl !== -1) done(undefined, buf.slice(0, nl).replace(/\r$/, ''));
      else if (buf.length > 4096) done(new Error('greeting line too long'));
    });
    sock.once('error', (err) => done(err));
  });
}

/**
 * Waits until the server on `port` greets with a line matching `want` (polled every 100 ms up to
 * timeoutMs); fails early, with `diag()` in the message, when `child` exits first or another server answers.
 */
export async function waitGreeting(port: number, want: RegExp, timeoutMs: number, child: ChildProcess, diag: () => Promise<string>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (let i = 0; i < 10_000 && Date.now() < deadline; i++) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`exited (${child.exitCode ?? child.signalCode}) before greeting: ${await diag()}`);
    try {
      const line = await firstLine(port, 2000);
      if (want.test(line)) return;
      throw new Error(`another server answers on port ${port}: ${JSON.stringify(line)}`);
    } catch (err) {
      last = (err as Error).message;
      if (last.startsWith('another server')) throw err;
    }
    await sleep(100);
  }
  throw new Error(`no greeting on 127.0.0.1:${port} within ${timeoutMs} ms (${last}): ${await diag()}`);
}

/** Forks a TypeScript file (through tsx) with an IPC channel; its stderr is kept (last 20 KB). */
export function forkTs(file: string, args: string[] = []): { child: ChildProcess; stderr: () => string } {
  const child = fork(file, args, { execArgv: ['--import', TSX], stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-20_000);
  });
  return { child, stderr: () => stderr };
}

/**
 * Sends `msg` (if given) and resolves with the first message for which `pick` returns a value; rejects when
 * `pick` throws, the child exits, or after timeoutMs.
 */
export function ipcRequest<M, R>(child: ChildProcess, msg: M | undefined, pick: (m: unknown) => R | undefined, timeoutMs: number, what: string): Promise<R> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      clearTimeout(timer);
      child.off('message', onMsg);
      child.off('exit', onExit);
    };
    const onMsg = (m: unknown) => {
      let r: R | undefined;
      try {
        r = pick(m);
      } catch (err) {
        cleanup();
        reject(err as Error);
        return;
      }
      if (r === undefined) return;
      cleanup();
      resolve(r);
    };
    const onExit = (code: number | null, sig: string | null) => {
      cleanup();
      reject(new Error(`${what}: child exited (${code ?? sig})`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${what}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('message', onMsg);
    child.once('exit', onExit);
    if (msg !== undefined) child.send(msg as object);
  });
}

/** SIGTERM, then SIGKILL after graceMs; resolves when the process is gone. */
export async function stopChild(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(t);
}

/** Resident set size of a process (VmRSS in /proc/PID/status), in bytes. */
export async function vmRss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

/** The last `bytes` of a file as text ('' when it cannot be read). */
export async function fileTail(file: string, bytes: number): Promise<string> {
  try {
    const fh = await open(file, 'r');
    try {
      const { size } = await fh.stat();
      const len = Math.min(size, bytes);
      const buf = Buffer.alloc(len);
      await fh.read(buf, 0, len, size - len);
      return buf.toString('utf8');
    } finally {
      await fh.close();
    }
  } catch {
    return '';
  }
}
