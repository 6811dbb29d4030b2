// Haraka 3.3 as the smtp benchmark's peer: installed on first use outside the project's dependencies
// (bench/.peers/haraka, ignored by git), configured in a scratch directory and started as its own process.
//
// Install: `npm install` of Haraka 3.3.4 with the `overrides` issue 4 names (encoding-japanese 2.4.0, libqp
// 2.1.2: Haraka's libmime 5.6.4 pins encoding-japanese 2.5.0 and libqp 3.0.1, which the registry reachable
// here does not serve; the newest it has are these) and `--ignore-scripts` (npm 11 blocks dependency
// install scripts here anyway; Haraka needs none: node-gyp is only for optional native plugins). npm warns
// that some of Haraka's dependencies declare Node >= 22; it runs on Node 20.20 regardless.
//
// Configuration — the same job relaygate does, nothing more:
//   plugins: rdns_local (below), relay (relay_acl_allow = the load generator's ACL address), auth/flat_file
//            (one user, PLAIN/LOGIN; Haraka offers AUTH without TLS to private/loopback clients), and
//            queue/smtp_forward with enable_outbound=true (relayed mail goes to the sink, not to MX lookups).
//   connection.ini: Haraka's shipped one (as `haraka -i` copies it).
//   smtp.ini: listen 127.0.0.1:<port>, nodes=0 (no cluster: ONE process, like relaygate), public_ip set (no
//            STUN lookup at start).
//   log.ini:  level=warn. Haraka's shipped default is info, which writes several lines per transaction;
//            warn is the setting most favourable to Haraka (relaygate keeps its default, info).
// With `tcpNoDelay`, haraka-nodelay.cjs is preloaded as well (TCP_NODELAY on Haraka's outgoing sockets): not
// stock Haraka, a second figure beside the stock one (see that file for why).
// Nothing does DNS: none of Haraka's DNS plugins (rdns checks, dnsbl, helo.checks, spf, mail_from
// .is_resolvable) is loaded, and the one lookup Haraka's core always makes — the client's reverse DNS — is
// answered by the local plugin `rdns_local` with "localhost". The loopback guard is preloaded as well, and
// anything it blocks shows up in the figure's notes.
//
// Security: scratch configuration only; Haraka binds 127.0.0.1; a port is chosen free and the greeting is
// checked to be this Haraka's before any load is sent.

import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fileTail, freePort, stopChild, waitGreeting, type Peer } from './process.ts';

export const HARAKA_VERSION = '3.3.4';
export const HARAKA_ME = 'haraka.bench';
const HERE = fileURLToPath(new URL('.', import.meta.url));
export const HARAKA_HOME = join(HERE, '..', '.peers', 'haraka');
const GUARD = join(HERE, 'loopback-guard.cjs');
const NODELAY = join(HERE, 'haraka-nodelay.cjs');

const PACKAGE_JSON = {
  name: 'relaygate-bench-haraka',
  private: true,
  description: 'Haraka for bench/smtp.ts (installed by bench/peers/haraka.ts; not a relaygate dependency)',
  dependencies: { Haraka: HARAKA_VERSION },
  overrides: { 'encoding-japanese': '2.4.0', libqp: '2.1.2' },
};

function npmInstall(dir: string, timeoutMs: number): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolve) => {
    const child = spawn('npm', ['install', '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel=error'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const add = (d: Buffer) => {
      output = (output + d.toString()).slice(-4000);
    };
    child.stdout.on('data', add);
    child.stderr.on('data', add);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ ok: false, output: `${output}\n${err.message}` });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ ok: code === 0, output: code === 0 ? output : `${output}\nnpm install exited ${code ?? signal}` });
    });
  });
}

async function installedVersion(): Promise<string | undefined> {
  try {
    const pkg = JSON.parse(await readFile(join(HARAKA_HOME, 'node_modules', 'Haraka', 'package.json'), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : undefined;
  } catch {
    return undefined;
  }
}

/** Installs Haraka into HARAKA_HOME unless that version is there; returns why not when it cannot. */
export async function ensureHaraka(log: (s: string) => void): Promise<{ ok: true } | { ok: false; reason: string }> {
  if ((await installedVersion()) === HARAKA_VERSION) return { ok: true };
  log(`installing Haraka ${HARAKA_VERSION} into ${HARAKA_HOME} (first use; npm install, ~10-60 s)...`);
  await mkdir(HARAKA_HOME, { recursive: true });
  await writeFile(join(HARAKA_HOME, 'package.json'), `${JSON.stringify(PACKAGE_JSON, null, 2)}\n`);
  const r = await npmInstall(HARAKA_HOME, 300_000);
  if (!r.ok) return { ok: false, reason: `npm install of Haraka ${HARAKA_VERSION} failed: ${r.output.trim().split('\n').slice(-3).join(' / ')}` };
  const v = await installedVersion();
  if (v !== HARAKA_VERSION) return { ok: false, reason: `npm install finished but node_modules/Haraka is ${v ?? 'missing'}, not ${HARAKA_VERSION}` };
  return { ok: true };
}

export interface HarakaOptions {
  /** scratch directory for config, plugins, queue and the log */
  readonly dir: string;
  readonly sinkPort: number;
  /** client addresses that may relay by ACL (relay_acl_allow) */
  readonly relayAllow: readonly string[];
  readonly user: string;
  readonly pass: string;
  /** preload haraka-nodelay.cjs (TCP_NODELAY on Haraka's outgoing sockets): not stock Haraka */
  readonly tcpNoDelay?: boolean | undefined;
}

/** Writes the configuration, starts Haraka and waits for its greeting. */
export async function startHaraka(o: HarakaOptions): Promise<Peer> {
  const cfg = join(o.dir, 'config');
  await mkdir(cfg, { recursive: true });
  await mkdir(join(o.dir, 'plugins'), { recursive: true });
  await mkdir(join(o.dir, 'queue'), { recursive: true });
  const port = await freePort();
  const files: Record<string, string> = {
    me: `${HARAKA_ME}\n`,
    plugins: ['rdns_local', 'relay', 'auth/flat_file', 'queue/smtp_forward', ''].join('\n'),
    'smtp.ini': [`listen=127.0.0.1:${port}`, 'nodes=0', 'public_ip=127.0.0.1', 'inactivity_timeout=300', ''].join('\n'),
    'log.ini': ['[main]', 'level=warn', 'timestamps=false', 'format=default', ''].join('\n'),
    'relay.ini': ['[relay]', 'acl=true', 'force_routing=false', 'dest_domains=false', 'all=false', ''].join('\n'),
    relay_acl_allow: `${o.relayAllow.map((ip) => `${ip}/32`).join('\n')}\n`,
    'auth_flat_file.ini': ['[core]', 'methods=PLAIN,LOGIN', '[users]', `${o.user}=${o.pass}`, ''].join('\n'),
    'smtp_forward.ini': ['host=127.0.0.1', `port=${o.sinkPort}`, 'enable_outbound=true', ''].join('\n'),
  };
  // connection.ini as `haraka -i` installs it (Haraka reads its greeting and limits from there)
  await copyFile(join(HARAKA_HOME, 'node_modules', 'Haraka', 'config', 'connection.ini'), join(cfg, 'connection.ini'));
  for (const [name, text] of Object.entries(files)) await writeFile(join(cfg, name), text);
  await writeFile(
    join(o.dir, 'plugins', 'rdns_local.js'),
    "// the client's reverse DNS, answered without a lookup (benchmarks never leave loopback)\n" +
      "exports.hook_lookup_rdns = function (next) { next(OK, 'localhost') }\n",
  );

  const logFile = join(o.dir, 'haraka.log');
  const out = createWriteStream(logFile);
  const bin = join(HARAKA_HOME, 'node_modules', 'Haraka', 'bin', 'haraka');
  const child: ChildProcess = spawn(process.execPath, ['--require', GUARD, ...(o.tcpNoDelay ? ['--require', NODELAY] : []), bin, '-c', o.dir], { cwd: o.dir, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.pipe(out);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-20_000);
  });
  const peer: Peer = {
    name: `Haraka ${HARAKA_VERSION}${o.tcpNoDelay ? ' +TCP_NODELAY' : ''}`,
    pid: child.pid!,
    port,
    logFile,
    stderr: () => stderr,
    stop: () => stopChild(child),
  };
  try {
    await waitGreeting(port, new RegExp(`^220 ${HARAKA_ME.replace('.', '\\.')} `), 30_000, child, async () => why(`${stderr}\n${await fileTail(logFile, 8000)}`));
  } catch (err) {
    await peer.stop();
    throw err;
  }
  return peer;
}

/** The lines of Haraka's output that say what went wrong, on one line (the TLS key warnings are noise here). */
function why(output: string): string {
  const lines = output.split('\n').map((l) => l.trim());
  const errors = lines.filter((l) => /Error|\[CRIT\]|\[ERROR\]|\[EMERG\]/.test(l) && !/tls (key|cert) .* could not be loaded/.test(l));
  return (errors.length > 0 ? errors.slice(0, 3) : lines.filter((l) => l !== '').slice(-3)).join(' / ').slice(0, 500);
}
