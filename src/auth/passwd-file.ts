// SASL backend `passwd-file`: Dovecot's passwd-file format, read by relaygate itself.
//
// Format (Dovecot 2.3 src/auth/db-passwd-file.c, doc "Passwd-file"): one `user:password:uid:gid:gecos:home:
// shell:extra_fields` per line; only user and password matter here. Empty lines and lines starting with `#`
// or `:` are skipped; fields split on every `:` (a password cannot contain one); a password without
// `{SCHEME}` is CRYPT (Dovecot's passwd-file default); libpam-pwdfile's `hash[13]` means CRYPT and `hash[34]`
// PLAIN-MD5; the first of duplicate users wins. Extra fields (space-separated `key=value`, or the old
// empty-field form) are honoured where they restrict a login: `allow_nets=` (client must be inside),
// `nologin` (never logs in, `reason=` kept for the log); `nopassword` (any password) is refused. Usernames are
// looked up as Dovecot does (backslash-escaped `\`, `"`, `'`), first exactly, then lower-cased like Dovecot's
// default `auth_username_format = %Lu`; the result carries the name as the file spells it.
//
// Reload: the file is re-read when it changes: fs.watch on its directory (editors and `mv` replace the file,
// which kills a watch on the file itself) and, as the fallback, an mtime/size/inode check at most once a
// second on the AUTH path. A file that cannot be read keeps the previous table (with an error logged):
// losing every user because of a half-finished `mv` would be worse.
//
// CRAM-MD5: possible for users stored `{PLAIN}` (or CLEAR/CLEARTEXT) or `{CRAM-MD5}` (Dovecot's HMAC-MD5
// context, resumed in md5.ts); `supportsCramMd5` is true when at least one user can, `canCramMd5(user)` says
// it per user.
//
// Security: the file is trusted operator data, the credentials are not. Entries that cannot be verified
// (unknown scheme, malformed hash) are reported at load with their line number and the user, never the hash,
// and never match. Comparisons are constant-time (password-schemes.ts). Slow hashes run off the main thread
// (crypt-pool.ts, argon2's own threads), so one user with `rounds=500000` cannot stall other logins. The
// timing difference between an unknown and a known user is not hidden here; the failure delay of the
// throttle (throttle.ts) covers both alike.

import { readFile, stat } from 'node:fs/promises';
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { RelaygateError } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import type { Clock } from '../clock.ts';
import { CidrSet } from '../net/index.ts';
import { CryptPool } from './crypt-pool.ts';
import { credentialProblem, errorText, withDeadline } from './common.ts';
import { cramMd5Capable, parseStoredPassword, verifyCramMd5, verifyPassword, type StoredPassword } from './password-schemes.ts';
import { fail, ok, tempfail, type AuthRequest, type AuthResult, type SaslBackend } from './types.ts';

export interface PasswdFileOptions {
  readonly path: string;
  readonly timeoutMs: number;
  readonly logger: Logger;
  readonly clock: Clock;
  /** scheme of passwords written without `{SCHEME}` (Dovecot's `scheme=` passdb arg); default CRYPT */
  readonly defaultScheme?: string;
  /** minimum time between two stat() checks on the AUTH path; default 1000 ms */
  readonly statIntervalMs?: number;
  /** watch the directory for changes (default true) */
  readonly watch?: boolean;
}

export interface PasswdEntry {
  /** the name as written in the file (unescaped) */
  readonly user: string;
  readonly line: number;
  readonly stored?: StoredPassword;
  /** why this entry can never log in (reported at load) */
  readonly problem?: string;
  readonly allowNets?: CidrSet;
  /** `nologin` extra field: the password may match, the login is refused anyway */
  readonly nologin?: string;
}

export interface ParsedPasswdFile {
  /** keyed by the name as written (escaped form, which is what lookups use) */
  readonly entries: ReadonlyMap<string, PasswdEntry>;
  /** one line per problem: `line N: user "x": ...` (never a hash) */
  readonly warnings: readonly string[];
}

/** Dovecot's str_escape(): what passwd-file lookups compare against. */
export function escapeUsername(user: string): string {
  return user.replace(/[\\"']/g, '\\$&');
}

function unescapeUsername(user: string): string {
  return user.replace(/\\(.)/g, '$1');
}

/** Parses passwd-file text; never throws. */
export function parsePasswdFile(text: string, defaultScheme = 'CRYPT'): ParsedPasswdFile {
  const entries = new Map<string, PasswdEntry>();
  const warnings: string[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i]!;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line === '' || line.startsWith('#') || line.startsWith(':') || line.trim() === '') continue;
    const n = i + 1;
    const f = line.split(':');
    const name = f[0]!;
    const shown = JSON.stringify(unescapeUsername(name).slice(0, 64));
    if (entries.has(name)) {
      warnings.push(`line ${n}: user ${shown} exists more than once; the first entry (line ${entries.get(name)!.line}) is used`);
      continue;
    }
    const base = { user: unescapeUsername(name), line: n };
    const unusable = (problem: string): void => {
      warnings.push(`line ${n}: user ${shown} cannot log in: ${problem}`);
      entries.set(name, { ...base, problem });
    };
    let pass = f[1];
    if (pass === undefined || pass === '') {
      unusable('no password');
      continue;
    }
    // libpam-pwdfile compatibility: `hash[13]` (crypt), `hash[34]` (MD5, which Dovecot reads as PLAIN-MD5)
    const pam = /^([^{$].*)\[(\d\d)\]$/.exec(pass);
    if (pam) pass = pam[2] === '34' ? `{PLAIN-MD5}${pam[1]}` : `{CRYPT}${pam[1]}`;
    // extra fields: new format after the shell field; the old format (empty field 8) held userdb data only
    const extra = f.length > 7 && f[7] !== '' ? f.slice(7).join(':').split(/\s+/).filter((x) => x !== '') : [];
    let allowNets: CidrSet | undefined;
    let nologin: string | undefined;
    let reason: string | undefined;
    let problem: string | undefined;
    for (const field of extra) {
      const eq = field.indexOf('=');
      const k = (eq === -1 ? field : field.slice(0, eq)).toLowerCase();
      const v = eq === -1 ? '' : field.slice(eq + 1);
      if (k === 'allow_nets') {
        const nets = v.split(',').map((x) => x.trim()).filter((x) => x !== '' && x !== 'local');
        try {
          allowNets = new CidrSet(nets, 'allow_nets');
        } catch (e) {
          problem = `bad allow_nets: ${(e as RelaygateError).details?.join('; ') || errorText(e)}`;
        }
      } else if (k === 'nologin') nologin = 'login disabled (nologin)';
      else if (k === 'reason') reason = v;
      else if (k === 'nopassword') problem = 'nopassword (any password) is not accepted by relaygate';
    }
    if (nologin !== undefined && reason) nologin = `login disabled (nologin): ${reason.slice(0, 200)}`;
    if (problem) {
      unusable(problem);
      continue;
    }
    const parsed = parseStoredPassword(pass, defaultScheme);
    if (!parsed.ok) {
      unusable(parsed.problem);
      continue;
    }
    entries.set(name, {
      ...base,
      stored: parsed.stored,
      ...(allowNets ? { allowNets } : {}),
      ...(nologin !== undefined ? { nologin } : {}),
    });
  }
  return { entries, warnings };
}

interface FileStamp {
  mtimeMs: number;
  size: number;
  ino: number;
}

export class PasswdFileBackend implements SaslBackend {
  readonly name = 'passwd-file';
  private table: ReadonlyMap<string, PasswdEntry> = new Map();
  private cramUsers = 0;
  private stamp: FileStamp | undefined;
  private lastStatAt = -Infinity;
  private reloading: Promise<boolean> | undefined;
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly pool = new CryptPool();
  private readonly o: Required<Omit<PasswdFileOptions, 'defaultScheme'>> & { defaultScheme: string };

  private constructor(opts: PasswdFileOptions) {
    this.o = { statIntervalMs: 1000, watch: true, defaultScheme: 'CRYPT', ...opts };
  }

  /** Reads the file now; a missing or unreadable file is RG_ERR_AUTH_BACKEND (a start-up error). */
  static async open(opts: PasswdFileOptions): Promise<PasswdFileBackend> {
    const b = new PasswdFileBackend(opts);
    const problem = await b.load();
    if (problem !== undefined) {
      await b.pool.close();
      throw new RelaygateError('RG_ERR_AUTH_BACKEND', `passwd-file ${opts.path}: ${problem}`);
    }
    if (b.o.watch) b.startWatch();
    return b;
  }

  /** At least one entry can answer CRAM-MD5 (recomputed at each load, not per EHLO). */
  get supportsCramMd5(): boolean {
    return this.cramUsers > 0;
  }

  /** Number of entries that can log in. */
  get users(): number {
    let n = 0;
    for (const e of this.table.values()) if (e.stored) n++;
    return n;
  }

  /** Can `username` authenticate with CRAM-MD5 (entry stored as cleartext or CRAM-MD5 context)? */
  canCramMd5(username: string): boolean {
    const e = this.lookup(username);
    return e?.stored !== undefined && cramMd5Capable(e.stored);
  }

  authenticate(req: AuthRequest): Promise<AuthResult> {
    if (this.closed) return Promise.resolve(tempfail('passwd-file backend closed'));
    return withDeadline(() => this.check(req), this.o.timeoutMs, 'passwd-file');
  }

  /** Re-reads the file now (also used by the watcher). Resolves false when it could not be read. */
  reload(): Promise<boolean> {
    if (!this.reloading) {
      this.reloading = this.load()
        .then((problem) => problem === undefined)
        .finally(() => {
          this.reloading = undefined;
        });
    }
    return this.reloading;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.debounce);
    this.watcher?.close();
    this.watcher = undefined;
    await this.pool.close();
  }

  private lookup(username: string): PasswdEntry | undefined {
    const key = escapeUsername(username);
    return this.table.get(key) ?? this.table.get(key.toLowerCase());
  }

  private async check(req: AuthRequest): Promise<AuthResult> {
    const bad = credentialProblem(req.username, req.password);
    if (bad) return fail(bad);
    await this.maybeReload();
    const entry = this.lookup(req.username);
    if (!entry) return fail('unknown user');
    if (!entry.stored) return fail(`entry unusable: ${entry.problem ?? 'no password'}`);
    if (entry.allowNets && !entry.allowNets.contains(req.clientIp)) return fail('client address not in allow_nets');
    let good: boolean;
    if (req.mechanism === 'CRAM-MD5') {
      if (req.challenge === undefined || req.digest === undefined) return fail('CRAM-MD5 without challenge or digest');
      if (!cramMd5Capable(entry.stored)) return fail(`CRAM-MD5 needs a {PLAIN} or {CRAM-MD5} entry, user has {${entry.stored.scheme}}`);
      good = verifyCramMd5(entry.stored, req.challenge, req.digest);
    } else {
      if (req.password === undefined) return fail('no password given');
      good = await verifyPassword(entry.stored, req.password, this.pool, this.o.timeoutMs);
    }
    if (!good) return fail('password mismatch');
    if (entry.nologin !== undefined) return fail(entry.nologin);
    return ok(entry.user);
  }

  /** The cheap fallback to the watcher: stat at most every statIntervalMs, reload when the file changed. */
  private async maybeReload(): Promise<void> {
    const now = this.o.clock();
    if (this.reloading) {
      await this.reloading;
      return;
    }
    if (now - this.lastStatAt < this.o.statIntervalMs) return;
    this.lastStatAt = now;
    try {
      const st = await stat(this.o.path);
      const s = this.stamp;
      if (s && st.mtimeMs === s.mtimeMs && st.size === s.size && st.ino === s.ino) return;
    } catch {
      // gone or unreadable: load() logs it and keeps the table
    }
    await this.reload();
  }

  /** Reads and swaps the table; returns a problem text when the file could not be read (table kept). */
  private async load(): Promise<string | undefined> {
    const { path, logger } = this.o;
    let text: string;
    let st;
    try {
      st = await stat(path);
      if (!st.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'EINVAL' });
      text = await readFile(path, 'utf8');
    } catch (e) {
      const problem = errorText(e);
      if (this.stamp !== undefined) {
        logger.error({ backend: this.name, path, err_text: problem }, `passwd-file ${path}: cannot read it, keeping the ${this.table.size} users loaded before`);
      }
      return problem;
    }
    const parsed = parsePasswdFile(text, this.o.defaultScheme);
    for (const w of parsed.warnings) logger.warn({ backend: this.name, path }, `passwd-file ${path}: ${w}`);
    const first = this.stamp === undefined;
    this.table = parsed.entries;
    this.cramUsers = [...parsed.entries.values()].filter((e) => e.stored && cramMd5Capable(e.stored)).length;
    this.stamp = { mtimeMs: st.mtimeMs, size: st.size, ino: st.ino };
    this.lastStatAt = this.o.clock();
    const usable = this.users;
    logger.info({ backend: this.name, path, users: usable, unusable: parsed.entries.size - usable }, `passwd-file ${path}: ${first ? 'loaded' : 'reloaded'} ${usable} users`);
    if (parsed.entries.size === 0) logger.warn({ backend: this.name, path }, `passwd-file ${path}: no users`);
    return undefined;
  }

  private startWatch(): void {
    const { path, logger } = this.o;
    const name = basename(path);
    try {
      this.watcher = watch(dirname(path), { persistent: false }, (_event, file) => {
        if (file !== null && file !== name) return;
        clearTimeout(this.debounce);
        // several events arrive for one save; read once they stop (still bounded: one timer)
        this.debounce = setTimeout(() => {
          if (!this.closed) void this.reload();
        }, 50);
        this.debounce.unref();
      });
      this.watcher.on('error', (e) => {
        logger.warn({ backend: this.name, path, err_text: errorText(e) }, `passwd-file ${path}: watch failed, falling back to a stat check per AUTH`);
        this.watcher?.close();
        this.watcher = undefined;
      });
    } catch (e) {
      logger.warn({ backend: this.name, path, err_text: errorText(e) }, `passwd-file ${path}: cannot watch its directory, falling back to a stat check per AUTH`);
    }
  }
}
