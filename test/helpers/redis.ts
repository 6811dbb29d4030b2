// A private, real redis-server (Debian package `redis-server`) for tests and benchmarks: no config file,
// bound to 127.0.0.1 on a free port, no persistence unless asked (`appendonly` for restart tests), its
// working directory in a temp dir. It is checked with a PING (the server must answer +PONG: we are talking
// to Redis, not to whatever else took the port) before use, and killed at stop() or when this process exits.
// `restart()` keeps the port, `pause()`/`resume()` freeze it (SIGSTOP/SIGCONT) to play a hung server.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient } from 'redis';
import { freePort, waitExit } from './proc.ts';

export interface RedisServerOptions {
  /** requirepass */
  password?: string;
  /** AOF with fsync always: data survives restart() */
  appendonly?: boolean;
  /** more arguments (e.g. --cluster-enabled yes, --replicaof 127.0.0.1 PORT) */
  args?: string[];
  /** run as a sentinel: these lines go into its config file (sentinel needs a writable one) */
  sentinel?: string[];
}

export interface RedisServer {
  readonly port: number;
  readonly dir: string;
  /** redis://[:password@]127.0.0.1:port */
  readonly url: string;
  readonly pid: number;
  /** stop (SIGKILL: a crash), then start again on the same port */
  restart(opts?: { downMs?: number }): Promise<void>;
  /** SIGKILL, leaving it down until start() */
  kill(): Promise<void>;
  start(): Promise<void>;
  pause(): void;
  resume(): void;
  /** one command through a fresh node-redis client (hostile values, PTTL, SCAN ...) */
  command(...args: (string | Buffer)[]): Promise<unknown>;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

function encode(args: (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === 'string' ? Buffer.from(a) : a;
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/** Sends one command, returns the raw reply text (the first reply only; enough for simple commands). */
export function rawCommand(port: number, args: (string | Buffer)[], password?: string, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no reply from redis on ${port} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.on('connect', () => {
      if (password !== undefined) sock.write(encode(['AUTH', password]));
      sock.write(encode(args));
    });
    sock.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      const lines = buf.split('\r\n');
      // AUTH's +OK first when a password was sent
      const skip = password !== undefined ? 1 : 0;
      if (lines.length - 1 <= skip) return;
      const first = lines[skip]!;
      if (first.startsWith('$') && Number(first.slice(1)) >= 0 && lines.length - 1 < skip + 2) return;
      clearTimeout(timer);
      sock.destroy();
      resolve(first.startsWith('$') && Number(first.slice(1)) >= 0 ? lines[skip + 1]! : first);
    });
  });
}

export async function startRedis(opts: RedisServerOptions = {}): Promise<RedisServer> {
  const dir = await mkdtemp(join(tmpdir(), 'rg-redis-'));
  let child: ChildProcess | undefined;
  let port = await freePort(['127.0.0.1']);

  const launch = async (): Promise<void> => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--daemonize', 'no', '--protected-mode', 'yes', '--loglevel', 'warning'];
    if (opts.sentinel !== undefined) {
      const conf = join(dir, 'sentinel.conf');
      await writeFile(conf, `${opts.sentinel.join('\n')}\n`);
      args.unshift(conf, '--sentinel');
    } else {
      args.push('--save', '', '--appendonly', opts.appendonly ? 'yes' : 'no');
      if (opts.appendonly) args.push('--appendfsync', 'always');
    }
    if (opts.password !== undefined) args.push('--requirepass', opts.password);
    args.push(...(opts.args ?? []));
    const c = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    c.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    live.add(c);
    c.once('exit', () => live.delete(c));
    const spawned = await new Promise<Error | undefined>((r) => {
      c.once('spawn', () => r(undefined));
      c.once('error', (e) => r(e));
    });
    if (spawned) throw new Error(`cannot start redis-server (install the Debian package redis-server): ${spawned.message}`);
    child = c;
    // Ready when it answers PING with +PONG; bounded.
    for (let i = 0; i < 100; i++) {
      if (c.exitCode !== null) throw new Error(`redis-server exited (${c.exitCode}) on port ${port}: ${stderr.trim()}`);
      const pong = await rawCommand(port, ['PING'], opts.password, 500).catch(() => undefined);
      if (pong === '+PONG') return;
      await sleep(50);
    }
    throw new Error(`redis-server on 127.0.0.1:${port} did not answer PING`);
  };

  const kill = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.kill('SIGCONT');
    c.kill('SIGKILL');
    await waitExit(c, 5000);
  };

  // A fresh port may be taken between freePort() and the bind: try a few.
  for (let attempt = 0; ; attempt++) {
    try {
      await launch();
      break;
    } catch (err) {
      await kill();
      if (attempt >= 3) {
        await rm(dir, { recursive: true, force: true });
        throw err;
      }
      port = await freePort(['127.0.0.1']);
    }
  }

  const auth = opts.password === undefined ? '' : `:${encodeURIComponent(opts.password)}@`;
  return {
    port,
    dir,
    url: `redis://${auth}127.0.0.1:${port}`,
    get pid() {
      return child?.pid ?? -1;
    },
    async restart(o = {}) {
      await kill();
      if (o.downMs) await sleep(o.downMs);
      await launch();
    },
    kill,
    start: launch,
    pause() {
      child?.kill('SIGSTOP');
    },
    resume() {
      child?.kill('SIGCONT');
    },
    async command(...args) {
      const c = createClient({ url: `redis://${auth}127.0.0.1:${port}`, socket: { reconnectStrategy: false } });
      c.on('error', () => undefined);
      await c.connect();
      try {
        return await c.sendCommand(args);
      } finally {
        c.destroy();
      }
    },
    async stop() {
      await kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
