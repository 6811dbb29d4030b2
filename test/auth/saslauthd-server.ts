// A private Cyrus saslauthd for the `saslauthd` SASL backend tests: `saslauthd -a sasldb -m DIR -n 1 -d`
// with users in a private sasldb made by `saslpasswd2 -c -p -f DB -u REALM USER`.
//
// saslauthd's sasldb mechanism has no option for the database path: it always opens /etc/sasldb2
// (Cyrus saslauthd/auth_sasldb.c passes no path, libsasl's default applies). So the daemon runs in its
// own mount namespace (`unshare --mount --propagation private`) in which our database is bind-mounted over
// /etc/sasldb2; the machine's /etc/sasldb2 is neither read nor changed. Debian's sasl2-bin creates that
// file on install, which the bind mount needs as its target.
//
// Needs root (unshare, mount) and Debian's sasl2-bin (saslauthd, saslpasswd2) and util-linux (unshare).
// Every wait is bounded.
import { spawn, type ChildProcess } from 'node:child_process';
import { access, mkdtemp, rm, mkdir } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pollFor, runOk, waitExit } from '../helpers/proc.ts';

export interface SaslUser {
  user: string;
  pass: string;
  realm: string;
}

export interface PrivateSaslauthd {
  readonly dir: string;
  readonly runDir: string;
  readonly muxPath: string;
  readonly output: () => string;
  stop(opts?: { keepDir?: boolean }): Promise<void>;
}

function canConnect(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createConnection({ path });
    const t = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, 1000);
    s.on('connect', () => {
      clearTimeout(t);
      s.destroy();
      resolve(true);
    });
    s.on('error', () => {
      clearTimeout(t);
      resolve(false);
    });
  });
}

export async function startSaslauthd(users: SaslUser[]): Promise<PrivateSaslauthd> {
  if (process.getuid?.() !== 0) throw new Error('startSaslauthd: needs root (unshare + mount)');
  await access('/etc/sasldb2').catch(() => {
    throw new Error('startSaslauthd: /etc/sasldb2 is missing (Debian sasl2-bin creates it); it is the bind-mount target');
  });
  const dir = await mkdtemp(join(tmpdir(), 'rg-saslauthd-'));
  const db = join(dir, 'sasldb2');
  const runDir = join(dir, 'run');
  await mkdir(runDir);
  for (const u of users) await runOk('saslpasswd2', ['-c', '-p', '-f', db, '-u', u.realm, u.user], { input: u.pass });
  const script = 'mount --bind "$1" /etc/sasldb2 && exec saslauthd -a sasldb -m "$2" -n 1 -d';
  const child: ChildProcess = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', db, runDir], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const muxPath = join(runDir, 'mux');
  const up = await pollFor(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return false;
    return (await canConnect(muxPath)) ? true : undefined;
  }, 10_000, 50);
  const stop = async (opts: { keepDir?: boolean } = {}): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-(child.pid as number), 'SIGTERM');
      } catch {
        /* gone */
      }
      if (!(await waitExit(child, 5000))) {
        try {
          process.kill(-(child.pid as number), 'SIGKILL');
        } catch {
          /* gone */
        }
        await waitExit(child, 3000);
      }
    }
    if (!opts.keepDir) await rm(dir, { recursive: true, force: true });
  };
  if (up !== true) {
    await stop();
    throw new Error(`saslauthd did not start: ${out.slice(-1500)}`);
  }
  return { dir, runDir, muxPath, output: () => out, stop };
}
