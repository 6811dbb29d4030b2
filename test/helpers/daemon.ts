// The real daemon for tests: `relaygate run -c FILE` as a child process (node + tsx), its pino lines parsed
// as they arrive, "up" when it logged its `components` line, stopped with SIGTERM (bounded, then SIGKILL).
import { spawn, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';
import { pollFor, waitExit, type RunResult } from './proc.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'src/main.ts');
// The CLI runs from a temporary directory, so tsx is named by its resolved URL, not looked up from cwd.
const TSX = import.meta.resolve('tsx');

export class Daemon {
  out = '';
  private readonly parsed: Array<Record<string, unknown>> = [];
  private partial = '';
  private constructor(readonly child: ChildProcess) {
    child.stdout?.on('data', (d: Buffer) => {
      const s = d.toString();
      this.out += s;
      this.partial += s;
      let nl: number;
      while ((nl = this.partial.indexOf('\n')) !== -1) {
        const l = this.partial.slice(0, nl);
        this.partial = this.partial.slice(nl + 1);
        if (!l.startsWith('{')) continue;
        try {
          this.parsed.push(JSON.parse(l) as Record<string, unknown>);
        } catch {
          /* not a pino line */
        }
      }
    });
    child.stderr?.on('data', (d: Buffer) => (this.out += d.toString()));
  }

  /** Starts `relaygate run -c config` in `cwd` and waits (bounded) for its `components` line. */
  static async start(config: string, cwd: string, timeoutMs = 30_000): Promise<Daemon> {
    const d = new Daemon(spawn(process.execPath, ['--import', TSX, MAIN, 'run', '-c', config], { cwd, stdio: ['ignore', 'pipe', 'pipe'] }));
    const up = await pollFor(() => (d.exited() ? false : d.events().some((e) => e.event === 'components') ? true : undefined), timeoutMs, 50);
    if (up !== true) {
      await d.stop();
      throw new Error(`relaygate run did not start (${d.exited() ? `exited ${d.child.exitCode ?? d.child.signalCode}` : `no "components" line within ${timeoutMs} ms`}):\n${d.out.slice(-4000)}`);
    }
    return d;
  }

  exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /** The pino lines logged so far, in order (the same array, growing); with `event`, only those lines. */
  events(event?: string): readonly Record<string, unknown>[] {
    return event === undefined ? this.parsed : this.parsed.filter((e) => e.event === event);
  }

  has(event: string, pred: (e: Record<string, unknown>) => boolean = () => true): boolean {
    return this.parsed.some((e) => e.event === event && pred(e));
  }

  /** Waits (bounded) for a log line with this event; fails with the process's output. */
  async waitFor(event: string, pred: (e: Record<string, unknown>) => boolean = () => true, timeoutMs = 15_000): Promise<Record<string, unknown>> {
    const e = await pollFor(() => this.parsed.find((x) => x.event === event && pred(x)), timeoutMs, 50);
    if (e === undefined) throw new Error(`relaygate: no ${event} line within ${timeoutMs} ms:\n${this.out.slice(-3000)}`);
    return e;
  }

  /** The port of the first listener an `*_listening` event reported (`smtp_listening`, `http_listening`, ...). */
  async port(event: string, timeoutMs = 20_000): Promise<number> {
    const p = await pollFor(() => {
      const e = this.parsed.find((x) => x.event === event);
      const listeners = e?.listeners as Array<{ port: number }> | undefined;
      return (listeners?.[0]?.port ?? e?.port) as number | undefined;
    }, timeoutMs);
    if (p === undefined) throw new Error(`no ${event} line within ${timeoutMs} ms:\n${this.out.slice(-2000)}`);
    return p;
  }

  /** SIGTERM, wait (bounded) for the exit; returns the exit code (null = had to be killed). */
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

/** `relaygate ARGS` to completion (bounded), in `cwd`. */
export function relaygate(args: string[], cwd: string, timeoutMs = 30_000): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--import', TSX, MAIN, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr });
    });
  });
}
