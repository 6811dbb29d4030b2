// Shared pieces of the raw-log generators (capture-*.ts): running client attempts one at a time, attributing the
// lines each attempt appended to the log files, and writing the `<file>.notes.md` sidecars.
import { spawnSync } from 'node:child_process';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { imapLogin, noAuthSession, pop3Login, type SessionResult } from './clients.ts';

export type Kind =
  | 'pop3-user'
  | 'pop3-auth-plain'
  | 'pop3-abort-after-user'
  | 'imap-login'
  | 'imap-login-literal'
  | 'imap-authenticate-plain'
  | 'pop3-noauth-close'
  | 'pop3-noauth-quit'
  | 'imap-noauth-close'
  | 'imap-noauth-quit';

export interface Attempt {
  kind: Kind;
  /** source address (127.x.y.z or ::1) */
  src: string;
  user?: string;
  pass?: string;
  /** what the test intends: true = correct credentials */
  valid: boolean;
  note?: string;
}

export const kindText: Record<Kind, string> = {
  'pop3-user': 'POP3 USER/PASS',
  'pop3-auth-plain': 'POP3 AUTH PLAIN (initial response)',
  'pop3-abort-after-user': 'POP3 USER then drop the connection',
  'imap-login': 'IMAP LOGIN (quoted strings)',
  'imap-login-literal': 'IMAP LOGIN (literals)',
  'imap-authenticate-plain': 'IMAP AUTHENTICATE PLAIN (SASL-IR)',
  'pop3-noauth-close': 'POP3 greeting then close (no command)',
  'pop3-noauth-quit': 'POP3 greeting then QUIT',
  'imap-noauth-close': 'IMAP greeting then close (no command)',
  'imap-noauth-quit': 'IMAP greeting then LOGOUT',
};

/** Run one attempt against 127.0.0.1 / ::1 (chosen by the source address family). Errors come back as a string. */
export async function runAttempt(a: Attempt, ports: { pop3?: number; imap?: number }, expectGreeting?: RegExp, timeoutMs = 20_000): Promise<SessionResult | string> {
  const host = a.src.includes(':') ? '::1' : '127.0.0.1';
  const common = { host, localAddress: a.src, timeoutMs, ...(expectGreeting ? { expectGreeting } : {}) };
  const user = a.user ?? '';
  const pass = a.pass ?? '';
  const pop3 = ports.pop3 ?? 0;
  const imap = ports.imap ?? 0;
  try {
    switch (a.kind) {
      case 'pop3-user':
        return await pop3Login({ ...common, port: pop3, user, pass, method: 'user' });
      case 'pop3-auth-plain':
        return await pop3Login({ ...common, port: pop3, user, pass, method: 'auth-plain' });
      case 'pop3-abort-after-user':
        return await pop3Login({ ...common, port: pop3, user, pass, method: 'user', abortAfterUser: true });
      case 'imap-login':
        return await imapLogin({ ...common, port: imap, user, pass, method: 'login' });
      case 'imap-login-literal':
        return await imapLogin({ ...common, port: imap, user, pass, method: 'login', literal: true });
      case 'imap-authenticate-plain':
        return await imapLogin({ ...common, port: imap, user, pass, method: 'authenticate-plain' });
      case 'pop3-noauth-close':
        return await noAuthSession({ ...common, port: pop3, protocol: 'pop3', mode: 'close' });
      case 'pop3-noauth-quit':
        return await noAuthSession({ ...common, port: pop3, protocol: 'pop3', mode: 'quit' });
      case 'imap-noauth-close':
        return await noAuthSession({ ...common, port: imap, protocol: 'imap', mode: 'close' });
      case 'imap-noauth-quit':
        return await noAuthSession({ ...common, port: imap, protocol: 'imap', mode: 'quit' });
    }
  } catch (e) {
    return `client error: ${(e as Error).message}`;
  }
}

/** Lines of a text file (without a trailing empty one); '' when missing. */
export async function fileLines(path: string): Promise<string[]> {
  const t = await readFile(path, 'utf8').catch(() => '');
  const l = t.split('\n');
  if (l[l.length - 1] === '') l.pop();
  return l;
}

/** Wait until every file has grown past `before` and then stayed the same for `quietMs` (bounded by `maxMs`). */
export async function settle(paths: string[], before: number[], maxMs = 4_000, quietMs = 300): Promise<number[]> {
  const deadline = Date.now() + maxMs;
  let last = await Promise.all(paths.map(async (p) => (await fileLines(p)).length));
  let stableSince = Date.now();
  for (let i = 0; i < 1_000 && Date.now() < deadline; i++) {
    await sleep(50);
    const now = await Promise.all(paths.map(async (p) => (await fileLines(p)).length));
    if (now.some((n, j) => n !== last[j])) {
      last = now;
      stableSince = Date.now();
    }
    const grown = now.every((n, j) => n > (before[j] ?? 0));
    if (grown && Date.now() - stableSince >= quietMs) break;
  }
  return last;
}

export interface Segment {
  from: number; // 1-based first line
  to: number; // last line (inclusive); to < from = nothing
  label: string;
  attempt?: Attempt;
  result?: SessionResult | string;
}

/** Records which lines of which files each step added. */
export class Recorder {
  readonly segs: Segment[][];
  counts: number[];
  constructor(readonly paths: string[]) {
    this.segs = paths.map(() => []);
    this.counts = paths.map(() => 0);
  }
  /** Attribute everything appended since the last call to `seg`. `wait`: settle first (bounded). */
  async mark(seg: Omit<Segment, 'from' | 'to'>, wait = true, maxMs = 4_000): Promise<void> {
    const before = this.counts;
    const after = wait ? await settle(this.paths, before, maxMs) : await Promise.all(this.paths.map(async (p) => (await fileLines(p)).length));
    this.paths.forEach((_, j) => this.segs[j]!.push({ ...seg, from: (before[j] ?? 0) + 1, to: after[j] ?? 0 }));
    this.counts = after;
  }
}

export function md(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\r/g, '\\r').replace(/\n/g, '\\n');
}

/**
 * Per-line verdict inside one attempt's lines, decided by the caller (it knows the program's success line).
 * Return e.g. `GRANT 127.0.0.7`, `session end`, or `no grant`.
 */
export type Classify = (line: string, attempt: Attempt, clientOk: boolean) => string;

export function notesText(file: string, header: string[], lines: string[], segs: Segment[], classify: Classify): string {
  const out = [`# ${file}`, '', ...header, '', '| line(s) | source | what | username (JSON) | client saw | expected per line |', '|---|---|---|---|---|---|'];
  for (const s of segs) {
    const range = s.to < s.from ? '(none)' : s.from === s.to ? `${s.from}` : `${s.from}-${s.to}`;
    if (!s.attempt) {
      if (s.to < s.from) continue;
      out.push(`| ${range} | - | ${md(s.label)} | | | no grant |`);
      continue;
    }
    const a = s.attempt;
    const r = s.result;
    const reply = typeof r === 'string' ? '' : (r?.reply ?? '').replace(/\[CAPABILITY [^\]]*\]/, '[CAPABILITY …]');
    const saw = typeof r === 'string' ? md(r) : r ? `${r.ok ? 'OK' : 'refused'}: \`${md(reply.length > 120 ? reply.slice(0, 120) + '…' : reply)}\`` : '';
    const okClient = typeof r !== 'string' && r?.ok === true;
    const per: string[] = [];
    for (let n = s.from; n <= s.to; n++) per.push(`L${n}: ${classify(lines[n - 1] ?? '', a, okClient)}`);
    if (s.to < s.from) per.push('no line');
    const what = kindText[a.kind] + (a.note ? ` — ${a.note}` : '') + (a.pass !== undefined ? (a.valid ? ' (correct password)' : ' (wrong password)') : '');
    out.push(`| ${range} | ${a.src} | ${md(what)} | ${a.user !== undefined ? '`' + md(JSON.stringify(a.user)) + '`' : ''} | ${saw} | ${per.join('; ')} |`);
  }
  out.push('', NOTE_ATTRIBUTION, '');
  return out.join('\n');
}

export const NOTE_ATTRIBUTION =
  'Attribution is by time (the lines each attempt appended before the log went quiet): a late trailing line of a session (a session-end or statistics line written after the client left) can land in the next range. Every GRANT line also names its client address itself, so cross-check against the `source` column.';

/** Write a captured file and its notes. */
export async function writeCapture(outDir: string, name: string, lines: string[], header: string[], segs: Segment[], classify: Classify): Promise<void> {
  await mkdir(outDir, { recursive: true });
  await writeFile(join(outDir, name), lines.length ? lines.join('\n') + '\n' : '');
  await writeFile(join(outDir, `${name}.notes.md`), notesText(name, header, lines, segs, classify));
}

/**
 * Re-run this script inside a fresh network namespace (only `lo`, brought up) unless already there, so that a
 * daemon bound to a wildcard address or a stray DNS lookup can reach nothing but this namespace's loopback.
 * `mountNs`: also a private mount namespace (bind mounts made by the script stay inside it).
 * Returns in the child (go on), or exits the parent with the child's status.
 */
export function ensurePrivateNetns(opts: { mountNs?: boolean } = {}): void {
  if (process.env.RG_PRIVATE_NETNS === '1') return;
  const ns = opts.mountNs ? ['-n', '-m', '--propagation', 'private'] : ['-n'];
  const r = spawnSync('unshare', [...ns, 'sh', '-c', 'ip link set lo up && exec "$@"', 'sh', process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, RG_PRIVATE_NETNS: '1' },
    timeout: 30 * 60_000,
  });
  process.exit(r.status ?? 1);
}

export function today(): string {
  return new Date().toISOString().slice(0, 10);
}
