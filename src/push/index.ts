// push/: the sender side of the HTTP feed. A relaygate on a POP/IMAP host runs its log watchers as usual;
// with `push_to = [url, ...]` the logins they see go to an on-disk outbox (outbox.ts) and from there, signed,
// to every URL (sender.ts), instead of (or, with `push_local = true`, besides) this host's own access map.
//
// The sources write to a PushingMap: an AccessMap whose recordMany() queues the logins in the outbox and
// commits the source's position in the same outbox transaction, flushed before it returns, so a tailer's
// position never runs ahead of what is safely on disk. Reads (lookup, list, stats) go to the local map.
// A login is queued only when it could become a grant: a valid address (normalizeIp), not in this host's
// mynetworks (a POP host's own loopback clients mean nothing to the central server) or never_authorize,
// and not older than grace. Saved positions are read from the outbox first, then from the local map, so
// turning push_to on for a host that already watched its logs resumes where it was.
//
// Security: push_key is a secret: it is only handed to the signer, never logged (and `config show`
// redacts it). The configuration is validated by pushConfigProblems() before anything starts.

import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import { normalizeIp, type CidrSet } from '../net/index.ts';
import { MAX_USER } from '../sources/parser.ts';
import type { AccessMap, Grant, LoginEvent, MapStats, RecordResult, RefusalReason } from '../store/index.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log/logger.ts';
import type { Config } from '../config/index.ts';
import { FEED_PATH } from '../feeds/http-feed.ts';
import { Outbox, type QueuedLogin } from './outbox.ts';
import { PushSender } from './sender.ts';

export { Outbox, type OutboxEntry, type QueuedLogin } from './outbox.ts';
export { PushSender, backoffMs } from './sender.ts';

export interface PushingMapOptions {
  /** this host's access map: reads go here, and writes too when `recordLocally` */
  readonly local: AccessMap;
  readonly outbox: Outbox;
  readonly recordLocally: boolean;
  /** seconds */
  readonly grace: number;
  readonly mynetworks: CidrSet;
  readonly neverAuthorize: CidrSet;
  readonly clock: Clock;
  readonly logger: Logger;
}

function cap(s: string | undefined | null): string | undefined {
  if (s === undefined || s === null || s === '') return undefined;
  return s.length > MAX_USER ? s.slice(0, MAX_USER) : s;
}

/** The AccessMap the sources write to when push_to is set. */
export class PushingMap implements AccessMap {
  readonly counters = { queued: 0, refused: 0 };

  constructor(private readonly o: PushingMapOptions) {}

  private refuse(login: LoginEvent, reason: RefusalReason, detail: string, level: 'debug' | 'warn'): RecordResult {
    this.counters.refused++;
    this.o.logger[level]({ event: 'push_login_refused', reason, client_ip: login.ip, source: login.source, user: login.user }, `login not queued for push: ${detail}`);
    return { recorded: false, reason, detail };
  }

  /** Decides whether a login is worth pushing; the result stands for the grant the central server will make. */
  private check(login: LoginEvent, now: number): { result: RecordResult; queued?: QueuedLogin } {
    const ip = typeof login.ip === 'string' ? normalizeIp(login.ip) : undefined;
    if (ip === undefined) return { result: this.refuse(login, 'bad_ip', `invalid client address ${JSON.stringify(String(login.ip).slice(0, 64))} from ${login.source}`, 'warn') };
    const mine = this.o.mynetworks.match(ip);
    if (mine) return { result: this.refuse(login, 'mynetworks', `${ip} is inside this host's mynetworks (${mine.text})`, 'debug') };
    const never = this.o.neverAuthorize.match(ip);
    if (never) return { result: this.refuse(login, 'never_authorize', `${ip} is inside never_authorize (${never.text})`, 'debug') };
    const rawAt = login.at ?? now;
    const ttl = login.ttl ?? this.o.grace;
    if (!Number.isFinite(rawAt) || !Number.isFinite(ttl)) return { result: this.refuse(login, 'bad_time', `login time or ttl from ${login.source} is not a finite number`, 'warn') };
    const at = Math.floor(Math.min(rawAt, now));
    const expires = at + Math.min(ttl, this.o.grace) * 1000;
    if (expires <= now) return { result: this.refuse(login, 'stale', `login of ${ip} at ${new Date(at).toISOString()} is older than grace`, 'debug') };
    const user = cap(login.user);
    const service = cap(login.service);
    const grant: Grant = { ip, user: user ?? null, service: service ?? null, source: login.source, firstSeen: at, lastSeen: at, expires, count: 1 };
    return { result: { recorded: true, grant }, queued: { ip, user, service, at } };
  }

  async recordMany(logins: readonly LoginEvent[], state?: Readonly<Record<string, unknown>>): Promise<RecordResult[]> {
    const now = this.o.clock();
    const checked = logins.map((l) => this.check(l, now));
    let results = checked.map((c) => c.result);
    if (this.o.recordLocally && logins.length > 0) {
      // Local first (without the position): a crash before the outbox commit re-reads these lines, and
      // recording a login twice locally only merges into the same grant.
      const local = await this.o.local.recordMany(logins);
      results = local;
    }
    const queued = checked.flatMap((c) => (c.queued ? [c.queued] : []));
    await this.o.outbox.append(queued, state);
    this.counters.queued += queued.length;
    return results;
  }

  async record(login: LoginEvent): Promise<RecordResult> {
    const [r] = await this.recordMany([login]);
    return r!;
  }

  async getState(key: string): Promise<unknown> {
    const v = await this.o.outbox.getState(key);
    return v !== undefined ? v : this.o.local.getState(key);
  }

  setState(key: string, value: unknown): Promise<void> {
    return this.o.outbox.setState(key, value);
  }

  lookup(ip: string, now?: number): Promise<Grant | undefined> {
    return this.o.local.lookup(ip, now);
  }

  delete(ip: string): Promise<boolean> {
    return this.o.local.delete(ip);
  }

  list(now?: number): Promise<Grant[]> {
    return this.o.local.list(now);
  }

  sweep(now?: number): Promise<number> {
    return this.o.local.sweep(now);
  }

  stats(now?: number): Promise<MapStats> {
    return this.o.local.stats(now);
  }

  /** The outbox and the local map are closed by their owners (startPush's stop, the runtime). */
  async close(): Promise<void> {}
}

/** A push_to entry as the sender uses it; a bare "/" path means the feed's path. Error text on junk. */
export function normalizePushUrl(text: string): URL | string {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return `${JSON.stringify(text)} is not a URL (expected e.g. "https://192.0.2.25:8473${FEED_PATH}")`;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return `${JSON.stringify(text)}: only http:// and https:// URLs can be pushed to`;
  if (u.username !== '' || u.password !== '') return `${JSON.stringify(u.origin)}...: credentials do not belong in the URL (push_key_id and push_key sign every request)`;
  if (u.hash !== '') return `${JSON.stringify(text)}: a URL fragment (#...) makes no sense here`;
  if (u.pathname === '/' && u.search === '') u.pathname = FEED_PATH;
  return u;
}

/** Every problem of the push_* settings, as `key: problem` lines; validate.ts runs it. */
export function pushConfigProblems(config: Config): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  config.push_to.forEach((text, i) => {
    const u = normalizePushUrl(text);
    if (typeof u === 'string') out.push(`push_to[${i}]: ${u}`);
    else if (seen.has(u.href)) out.push(`push_to[${i}]: ${u.href} is listed twice`);
    else seen.add(u.href);
  });
  if (config.push_to.length > 0) {
    if (config.push_key_id === undefined) out.push('push_key_id: push_to needs this host\'s feeder id (a key of the receiving side\'s [feed] keys)');
    if (config.push_key === undefined) out.push('push_key: push_to needs the shared secret of push_key_id');
  } else {
    for (const k of ['push_key_id', 'push_key', 'push_ca'] as const) if (config[k] !== undefined) out.push(`${k}: applies only with push_to (set push_to = ["https://..."], or remove ${k})`);
    if (config.push_local) out.push('push_local: applies only with push_to');
  }
  if (config.push_ca !== undefined) {
    try {
      createSecureContext({ ca: readFileSync(resolve(config.push_ca)) });
    } catch (err) {
      out.push(`push_ca: ${resolve(config.push_ca)} is not a readable PEM CA certificate file: ${(err as Error).message}`);
    }
  }
  return out;
}

export interface RunningPush {
  readonly outbox: Outbox;
  readonly senders: readonly PushSender[];
  /** what the sources write to */
  readonly map: PushingMap;
  stop(): Promise<void>;
}

/** `relaygate run`: the outbox and one sender per push_to URL, when push_to is set; else undefined. */
export async function startPush(o: { config: Config; local: AccessMap; mynetworks: CidrSet; neverAuthorize: CidrSet; clock: Clock; logger: Logger }): Promise<RunningPush | undefined> {
  const { config, logger } = o;
  if (config.push_to.length === 0) return undefined;
  const urls = config.push_to.map((t) => normalizePushUrl(t)).filter((u): u is URL => typeof u !== 'string');
  const ca = config.push_ca === undefined ? undefined : await readFile(resolve(config.push_ca));
  const outbox = await Outbox.open({ path: resolve(config.data_dir, 'outbox'), limit: config.push_outbox_limit, consumers: urls.map((u) => u.href), clock: o.clock, logger });
  const map = new PushingMap({ local: o.local, outbox, recordLocally: config.push_local, grace: config.grace, mynetworks: o.mynetworks, neverAuthorize: o.neverAuthorize, clock: o.clock, logger });
  const senders = urls.map(
    (u) => new PushSender({ url: u.href, keyId: config.push_key_id!, secret: config.push_key!, ca, outbox, grace: config.grace, clock: o.clock, logger }),
  );
  for (const u of urls) {
    const host = normalizeIp(u.hostname.replace(/^\[|\]$/g, ''));
    if (u.protocol === 'http:' && !(host !== undefined && (host === '::1' || host.startsWith('127.')))) {
      logger.warn({ event: 'push_plain_http', url: u.href }, `push: ${u.href} is plain HTTP to another host: logins (users and addresses) cross the network unencrypted; prefer https://`);
    }
  }
  for (const s of senders) s.start();
  logger.info(
    { event: 'push_start', urls: urls.map((u) => u.href), key_id: config.push_key_id, queued: outbox.size, local: config.push_local, outbox: outbox.path },
    `push: delivering logins to ${urls.map((u) => u.href).join(', ')} as ${config.push_key_id}; ${outbox.size} login(s) waiting in ${outbox.path}${config.push_local ? '; also recorded locally' : ''}`,
  );
  let stopping: Promise<void> | undefined;
  return {
    outbox,
    senders,
    map,
    stop() {
      stopping ??= (async () => {
        await Promise.all(senders.map((s) => s.stop()));
        await outbox.close();
      })();
      return stopping;
    },
  };
}
