// LoginRecorder: turns parsed log lines into LoginEvents and writes them, batch by batch, to the access map,
// together with the source's position (one transaction: a restart neither loses nor repeats a login).
//
// Time: a grant counts from the line's own time, not from when it was read, so a line older than `grace`
// (a replay after a restart) makes no grant (the store refuses it as stale).
// Logout tracking (track_logout, off by default): while a session is open (Dovecot session id, or Courier's
// ip+user), the recorder refreshes its grant every `refreshMs`, so a long IMAP session keeps its IP
// authorized; at logout the grant is refreshed one last time with the logout's time, so `grace` starts
// then. Open sessions are held in memory only (bounded, capped at MAX_SESSION_MS): after a restart they
// fall back to plain grace, which is the safe direction.
//
// Security: only `login` results create grants; the parser already anchored, normalized and bounded the
// fields. A logout can only refresh a session this recorder itself saw log in.

import type { AccessMap, LoginEvent } from '../store/index.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log/logger.ts';
import type { ParseResult } from './parser.ts';

export const MAX_SESSION_MS = 12 * 3600_000;
const MAX_SESSIONS = 100_000;

export interface RecorderOptions {
  readonly map: AccessMap;
  readonly clock: Clock;
  readonly logger: Logger;
  /** `format:path` — stored as the grant's source */
  readonly source: string;
  readonly trackLogout: boolean;
  /** grace in seconds: open sessions are refreshed every grace/3 */
  readonly grace: number;
}

interface OpenSession {
  readonly ip: string;
  readonly user: string | undefined;
  readonly service: string | undefined;
  readonly since: number;
}

/** One batch of parse results as the store will see it (LoginRecorder.collect). */
export interface RecorderBatch {
  readonly events: readonly LoginEvent[];
  readonly lines: number;
  readonly logins: number;
}

export interface RecorderCounters {
  lines: number;
  logins: number;
  granted: number;
  refused: number;
  logouts: number;
  bad_ip: number;
}

export class LoginRecorder {
  readonly counters: RecorderCounters = { lines: 0, logins: 0, granted: 0, refused: 0, logouts: 0, bad_ip: 0 };
  private readonly sessions = new Map<string, OpenSession>();
  private refreshTimer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: RecorderOptions) {
    if (opts.trackLogout) {
      const every = Math.max(1000, Math.floor((opts.grace * 1000) / 3));
      this.refreshTimer = setInterval(() => void this.refreshOpenSessions(), every);
      this.refreshTimer.unref();
    }
  }

  get openSessions(): number {
    return this.sessions.size;
  }

  /** Records the logins among `results` and saves `state` in the same transaction. */
  async record(results: readonly ParseResult[], state?: Readonly<Record<string, unknown>>): Promise<void> {
    await this.write(this.collect(results), state);
  }

  /**
   * What `results` ask of the store: their LoginEvents. Session bookkeeping (track_logout) and the warnings
   * happen here, once per batch, however often the batch is then written (file-watch.ts retries it).
   */
  collect(results: readonly ParseResult[]): RecorderBatch {
    const now = this.opts.clock();
    const events: LoginEvent[] = [];
    let logins = 0;
    for (const r of results) {
      if (r.kind === 'login') {
        logins++;
        const at = r.time ?? now;
        events.push({ ip: r.ip, user: r.user, service: r.service, source: this.opts.source, at });
        if (r.userDropped) this.opts.logger.warn({ event: 'login_user_dropped', client_ip: r.ip, source: this.opts.source, why: r.userDropped }, `grant for ${r.ip} made without a user: ${r.userDropped}`);
        if (this.opts.trackLogout) this.open(r.session ?? `${r.ip}|${r.user ?? ''}`, { ip: r.ip, user: r.user, service: r.service, since: at });
      } else if (r.kind === 'logout') {
        this.counters.logouts++;
        if (!this.opts.trackLogout) continue;
        const key = r.session ?? (r.ip === undefined ? undefined : `${r.ip}|${r.user ?? ''}`);
        const s = key === undefined ? undefined : this.sessions.get(key);
        if (s === undefined || key === undefined) continue;
        this.sessions.delete(key);
        // grace starts at logout: refresh the grant with the logout's time
        events.push({ ip: s.ip, user: s.user, service: s.service, source: this.opts.source, at: r.time ?? now });
      } else if (r.reason === 'bad_ip') {
        this.counters.bad_ip++;
        this.opts.logger.warn({ event: 'login_bad_ip', source: this.opts.source, pattern: r.pattern, value: r.detail }, `a ${r.pattern} line carried no valid client address; ignored`);
      }
    }
    return { events, lines: results.length, logins };
  }

  /**
   * Writes a collected batch and `state` in one transaction; with `expect`, through the store's conditional
   * write (AccessMap.recordManyIf: only if the store still holds that state), when it has one. The store's
   * write is queued before the first await, so calls commit in call order. Lines and logins are counted
   * once written: a batch the store refused is offered again.
   */
  async write(batch: RecorderBatch, state?: Readonly<Record<string, unknown>>, expect?: Readonly<Record<string, unknown>>): Promise<void> {
    if (batch.events.length > 0 || state !== undefined) {
      const map = this.opts.map;
      if (expect !== undefined && map.recordManyIf !== undefined) {
        const { recorded, refused } = await map.recordManyIf(batch.events, state ?? {}, expect);
        this.counters.granted += recorded;
        this.counters.refused += refused;
      } else {
        for (const o of await map.recordMany(batch.events, state)) {
          if (o.recorded) this.counters.granted++;
          else this.counters.refused++;
        }
      }
    }
    this.counters.lines += batch.lines;
    this.counters.logins += batch.logins;
  }

  private open(key: string, s: OpenSession): void {
    this.sessions.delete(key);
    this.sessions.set(key, s);
    while (this.sessions.size > MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
  }

  /** Keeps open sessions' grants alive; sessions older than MAX_SESSION_MS are let go (a lost logout line). */
  async refreshOpenSessions(): Promise<void> {
    if (this.sessions.size === 0) return;
    const now = this.opts.clock();
    const events: LoginEvent[] = [];
    for (const [key, s] of this.sessions) {
      if (now - s.since > MAX_SESSION_MS) {
        this.sessions.delete(key);
        continue;
      }
      events.push({ ip: s.ip, user: s.user, service: s.service, source: this.opts.source, at: now });
    }
    try {
      if (events.length > 0) await this.opts.map.recordMany(events);
    } catch (err) {
      this.opts.logger.error({ event: 'session_refresh_failed', source: this.opts.source, err }, 'could not refresh open sessions; retrying at the next interval');
    }
  }

  close(): void {
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    this.sessions.clear();
  }
}
