// A private rsyslogd for tests: its own config, pid file, work directory and unix socket, writing every message to
// two files, one in the traditional BSD format (`Nov 21 16:33:39 mx ident: msg`) and one in Debian 12's default
// RFC 3339 format (`2026-11-21T16:33:38.969450+00:00 mx ident: msg`).
//
// Daemons write to /dev/log (syslog(3) has the path built in). So that a test never touches the machine's real
// /dev/log, wrapPrivateDevLog() runs a daemon in its own mount namespace (`unshare -m`, needs root) where /dev is a
// small tmpfs holding null/zero/random/urandom/full/tty (bind-mounted) and `log` -> this rsyslogd's socket.
// No DNS: net.enableDNS="off" and a fixed localHostName.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pollFor, waitExit } from './proc.ts';

export interface RsyslogOpts {
  /** host name written into every line (default `mx`) */
  hostname?: string;
  /** parent directory for the temp dir (default os.tmpdir()) */
  parentDir?: string;
}

export interface PrivateRsyslog {
  dir: string;
  socketPath: string;
  traditionalPath: string;
  rfc3339Path: string;
  /** argv that runs `argv` with /dev/log pointing at this rsyslogd (mount namespace; root only) */
  wrap(argv: string[]): string[];
  /** stop rsyslogd (flushes files), return both files' text, remove the temp dir unless keep */
  stop(opts?: { keep?: boolean }): Promise<{ traditional: string; rfc3339: string }>;
}

export async function startRsyslog(opts: RsyslogOpts = {}): Promise<PrivateRsyslog> {
  if (process.getuid?.() !== 0) throw new Error('startRsyslog: needs root (mount namespace for /dev/log)');
  const dir = await mkdtemp(join(opts.parentDir ?? tmpdir(), 'rg-rsyslog-'));
  await chmod(dir, 0o755);
  const socketPath = join(dir, 'log.sock');
  const traditionalPath = join(dir, 'traditional.log');
  const rfc3339Path = join(dir, 'rfc3339.log');
  const pidFile = join(dir, 'rsyslogd.pid');
  const conf = join(dir, 'rsyslog.conf');
  const host = opts.hostname ?? 'mx';
  if (!/^[A-Za-z0-9.-]+$/.test(host)) throw new Error('startRsyslog: bad hostname');
  await writeFile(
    conf,
    [
      `global(workDirectory="${dir}" net.enableDNS="off" localHostName="${host}" preserveFQDN="on")`,
      `module(load="imuxsock" SysSock.Use="off")`,
      `input(type="imuxsock" Socket="${socketPath}" RateLimit.Interval="0")`,
      `*.* action(type="omfile" file="${traditionalPath}" template="RSYSLOG_TraditionalFileFormat")`,
      `*.* action(type="omfile" file="${rfc3339Path}" template="RSYSLOG_FileFormat")`,
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn('rsyslogd', ['-n', '-f', conf, '-i', pidFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const ready = await pollFor(() => (existsSync(socketPath) ? true : child.exitCode !== null ? false : undefined), 10_000);
  if (ready !== true) {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw new Error(`rsyslogd did not start: ${stderr.trim()}`);
  }

  const devDir = join(dir, 'dev');
  const wrap = (argv: string[]): string[] => {
    const script = [
      'set -e',
      `mkdir -p "${devDir}"`,
      `mount -t tmpfs -o mode=755 tmpfs "${devDir}"`,
      `for n in null zero full random urandom tty; do touch "${devDir}/$n"; mount --bind "/dev/$n" "${devDir}/$n"; done`,
      `[ -d /dev/pts ] && mkdir "${devDir}/pts" && mount --rbind /dev/pts "${devDir}/pts" || true`,
      `[ -d /dev/shm ] && mkdir "${devDir}/shm" && mount --rbind /dev/shm "${devDir}/shm" || true`,
      `ln -s "${socketPath}" "${devDir}/log"`,
      `mount --rbind "${devDir}" /dev`,
      'exec "$@"',
    ].join('\n');
    return ['unshare', '-m', '--propagation', 'private', 'sh', '-c', script, 'sh', ...argv];
  };

  const stop = async (o: { keep?: boolean } = {}): Promise<{ traditional: string; rfc3339: string }> => {
    child.kill('SIGTERM');
    if (!(await waitExit(child, 5_000))) {
      child.kill('SIGKILL');
      await waitExit(child, 2_000);
    }
    const read = (p: string): Promise<string> => readFile(p, 'utf8').catch(() => '');
    const out = { traditional: await read(traditionalPath), rfc3339: await read(rfc3339Path) };
    if (!o.keep) await rm(dir, { recursive: true, force: true });
    return out;
  };

  return { dir, socketPath, traditionalPath, rfc3339Path, wrap, stop };
}
