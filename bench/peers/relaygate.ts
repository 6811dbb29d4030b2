// relaygate as the smtp benchmark's server under test: the real daemon (`relaygate run -c FILE`, in its own
// process, the loopback guard preloaded) with a generated configuration.
//
// Compiled, as installed: buildRelaygate() runs the project's own compiler (tsc with tsconfig.json's
// options) over src/ into bench/.peers/relaygate-build/dist (ignored by git; rebuilt when a source file is
// newer), and the daemon runs from there. Not through tsx: its loader runs on a second V8 isolate that
// adds ~30 MB of resident memory a production daemon does not have. Not into the project's dist/ either,
// because bin/relaygate.js prefers dist/ when it exists and tests would then run a stale build.
//
// Configuration:
//
//   mynetworks   = one address the load generator never uses, so no benchmark client relays by network;
//   [[watch]]    = a Dovecot log (rfc3339 prefix) holding one IMAP login per `grantClients` address: the
//                  daemon's own log watcher turns each into a POP-before-SMTP grant, and those clients relay
//                  through permit_pop_before_smtp (an access-map lookup at MAIL and at RCPT);
//   [auth]       = passwd-file with one {PLAIN} user, for the clients that relay with AUTH PLAIN;
//   [[listen]]   = 127.0.0.1:0, role smtp (the port is read from the daemon's `smtp_listening` log line);
//   [smtp]       = relayhost = the sink, peername_lookup = false (no DNS), client_limit raised for the
//                  1,000-idle-connection figure; every other setting (relayhost_pool, logging at info,
//                  bare_newline, xforward ...) is the default an operator gets.
// The daemon's log (pino JSON on stdout) goes to a file in the scratch directory, as it would in production.
//
// Security: scratch directory only; the daemon binds 127.0.0.1; its greeting is checked before use.

import { spawn } from 'node:child_process';
import { mkdir, open, readdir, stat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileTail, stopChild, waitGreeting, type Peer } from './process.ts';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const ROOT = join(HERE, '..', '..');
const BUILD = join(ROOT, 'bench', '.peers', 'relaygate-build');
const MAIN = join(BUILD, 'dist', 'main.js');
const GUARD = join(HERE, 'loopback-guard.cjs');
export const RELAYGATE_HOSTNAME = 'gw.bench';

/** Newest modification time of the .ts files under dir (recursive, bounded). */
async function newestSource(dir: string, depth = 0): Promise<number> {
  if (depth > 8) return 0;
  let newest = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, await newestSource(p, depth + 1));
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, (await stat(p)).mtimeMs);
  }
  return newest;
}

/**
 * Compiles src/ with the project's tsc into BUILD (skipped when the build is newer than every source).
 * Type errors elsewhere in a tree being edited do not stop the emit; they are returned for the notes.
 */
export async function buildRelaygate(log: (s: string) => void): Promise<{ typeErrors: number }> {
  const src = join(ROOT, 'src');
  const built = await stat(MAIN).then((st) => st.mtimeMs, () => 0);
  if (built > (await newestSource(src))) return { typeErrors: 0 };
  log(`compiling src/ with tsc into ${relative(ROOT, BUILD)}/dist (~20 s)...`);
  await mkdir(BUILD, { recursive: true });
  const rel = relative(BUILD, ROOT);
  await writeFile(
    join(BUILD, 'tsconfig.json'),
    `${JSON.stringify({ extends: `${rel}/tsconfig.json`, compilerOptions: { rootDir: `${rel}/src`, outDir: './dist', sourceMap: false, noEmit: false }, include: [`${rel}/src/**/*.ts`] }, null, 2)}\n`,
  );
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const out = await new Promise<{ code: number | null; text: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [tsc, '-p', join(BUILD, 'tsconfig.json')], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text = (text + d.toString()).slice(-20_000)));
    child.stderr.on('data', (d: Buffer) => (text = (text + d.toString()).slice(-20_000)));
    const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, text });
    });
  });
  const fresh = await stat(MAIN).then((st) => st.mtimeMs, () => 0);
  if (fresh <= built) throw new Error(`tsc did not emit ${relative(ROOT, MAIN)} (exit ${out.code}): ${out.text.slice(-1500)}`);
  return { typeErrors: (out.text.match(/error TS\d+/g) ?? []).length };
}

export interface RelaygateOptions {
  readonly dir: string;
  readonly sinkPort: number;
  /** client addresses that get a POP-before-SMTP grant through the Dovecot log */
  readonly grantClients: readonly string[];
  readonly user: string;
  readonly pass: string;
  /** smtp.client_limit */
  readonly clientLimit: number;
  /** extra [smtp] lines (experiments, e.g. `relayhost_pool = 20`); none in the benchmark */
  readonly smtpExtra?: readonly string[] | undefined;
  /** extra node options (experiments, e.g. --cpu-prof); none in the benchmark */
  readonly nodeArgs?: readonly string[] | undefined;
}

function ts(ms: number): string {
  return new Date(ms).toISOString().replace('Z', '000+00:00');
}

/** One Dovecot IMAP login line (rfc3339 prefix), as Dovecot writes it. */
export function dovecotLogin(at: number, user: string, ip: string, n: number): string {
  return `${ts(at)} mx dovecot: imap-login: Login: user=<${user}>, method=PLAIN, rip=${ip}, lip=127.0.0.1, mpid=${4000 + n}, TLS, session=<bench${n}AAAAAAAAAA>\n`;
}

export function relaygateConfig(o: RelaygateOptions): string {
  return [
    '# generated by bench/peers/relaygate.ts',
    `data_dir = ${JSON.stringify(join(o.dir, 'data'))}`,
    'log_level = "info"',
    'mynetworks = ["127.0.0.254/32"]',
    'mydestination = ["local.example"]',
    '',
    '[[watch]]',
    `path = ${JSON.stringify(join(o.dir, 'dovecot.log'))}`,
    'format = "dovecot"',
    'prefix = "rfc3339"',
    '',
    '[[listen]]',
    'address = "127.0.0.1:0"',
    'role = "smtp"',
    '',
    '[smtp]',
    `hostname = "${RELAYGATE_HOSTNAME}"`,
    `relayhost = "127.0.0.1:${o.sinkPort}"`,
    'peername_lookup = false',
    `client_limit = ${o.clientLimit}`,
    ...(o.smtpExtra ?? []),
    '',
    '[auth]',
    'backend = "passwd-file"',
    `path = ${JSON.stringify(join(o.dir, 'passwd'))}`,
    '',
  ].join('\n');
}

/** The listening port from the daemon's pino lines, once `smtp_listening` and `start` were logged. */
export function listeningPort(log: string): number | undefined {
  let port: number | undefined;
  let started = false;
  for (const line of log.split('\n')) {
    if (!line.startsWith('{')) continue;
    let o: { event?: unknown; listeners?: unknown };
    try {
      o = JSON.parse(line) as typeof o;
    } catch {
      continue;
    }
    if (o.event === 'smtp_listening' && Array.isArray(o.listeners)) {
      const first = o.listeners[0] as { port?: unknown } | undefined;
      if (typeof first?.port === 'number') port = first.port;
    }
    if (o.event === 'start') started = true;
  }
  return started ? port : undefined;
}

export async function startRelaygate(o: RelaygateOptions): Promise<Peer> {
  const now = Date.now();
  await writeFile(join(o.dir, 'passwd'), `${o.user}:{PLAIN}${o.pass}\n`);
  await writeFile(join(o.dir, 'dovecot.log'), o.grantClients.map((ip, i) => dovecotLogin(now, `pop${i}`, ip, i)).join(''));
  const config = join(o.dir, 'relaygate.toml');
  await writeFile(config, relaygateConfig(o));
  const logFile = join(o.dir, 'relaygate.log');
  const out = await open(logFile, 'w');
  const child = spawn(process.execPath, [...(o.nodeArgs ?? []), '--require', GUARD, MAIN, 'run', '-c', config], { cwd: o.dir, stdio: ['ignore', out.fd, 'pipe'] });
  await out.close();
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-20_000);
  });
  const peer: Peer = {
    name: 'relaygate',
    pid: child.pid!,
    port: 0,
    logFile,
    stderr: () => stderr,
    stop: () => stopChild(child, 15_000),
  };
  const diag = async () => `${stderr.slice(-2000)}\n${await fileTail(logFile, 3000)}`;
  try {
    let port: number | undefined;
    for (let i = 0; i < 600 && port === undefined; i++) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`relaygate exited (${child.exitCode ?? child.signalCode}) during start: ${await diag()}`);
      await sleep(50);
      port = listeningPort(await fileTail(logFile, 64 * 1024));
    }
    if (port === undefined) throw new Error(`relaygate did not log smtp_listening + start within 30 s: ${await diag()}`);
    await waitGreeting(port, new RegExp(`^220 ${RELAYGATE_HOSTNAME.replace('.', '\\.')} `), 10_000, child, diag);
    return { ...peer, port };
  } catch (err) {
    await peer.stop();
    throw err;
  }
}
