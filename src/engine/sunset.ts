// The POP-before-SMTP sunset: per domain or user, a date after which a grant no longer lets a client relay.
//
// `pop_before_smtp_sunset = { "example.com" = 2027-03-01, "alice@example.org" = 2027-06-01, "*" = 2028-01-01 }`
// Keys: an address or login with `@` (matched exactly, case-insensitive), a bare login without a dot (the
// POP/IMAP user name as the log wrote it, e.g. "alice"), a domain (matched against the login's domain and the
// envelope sender's domain), or "*" for everyone. The most specific key wins: login, then sender address,
// then the login's domain, then the sender's domain, then "*". A date means 00:00 UTC of that day.
//
// Before the date: the grant still permits; the decision carries a warning (logged) and, when configured, a
// header for the front end to add. From the date on: the grant is ignored, and if the relay list then refuses
// the recipient as an unauthorized destination, the client gets the configurable 5xx that tells the user to
// turn on SMTP authentication. A local recipient is still accepted: the sunset takes away relaying, nothing else.
// Security: keys come from the configuration; what is matched (grant user, sender) is only compared, never
// echoed into a reply except through the configured text's placeholders, which are printable()-escaped.

import { printable } from '../log/format.ts';
import { makeReply, type Reply } from './outcome.ts';
import type { ParsedAddress } from './address.ts';

/** `local@domain` of a usable, non-null envelope address, else undefined. */
export function plainAddress(p: ParsedAddress | undefined): string | undefined {
  return p !== undefined && p.valid && !p.isNull && p.hasDomain && !p.routed ? `${p.localRaw}@${p.domain}` : undefined;
}

export interface SunsetOptions {
  /** key → date: `YYYY-MM-DD` text, a JS Date, or ms since the epoch */
  readonly entries: Readonly<Record<string, string | Date | number>>;
  /** reply text after the date; `{date}` and `{key}` are replaced */
  readonly text?: string | undefined;
  /** SMTP code and DSN of that reply */
  readonly code?: number | undefined;
  readonly dsn?: string | undefined;
  /** header added before the date (`Name`); undefined or '' adds none */
  readonly header?: string | undefined;
}

export interface SunsetHit {
  /** the configuration key that matched */
  readonly key: string;
  /** 00:00 UTC of the sunset day, ms */
  readonly at: number;
  /** YYYY-MM-DD */
  readonly date: string;
}

export const DEFAULT_SUNSET_TEXT =
  'Relaying after a POP/IMAP login ended on {date}: turn on SMTP authentication (username and password for outgoing mail) in your mail program';

const DAY = /^(\d{4})-(\d{2})-(\d{2})$/;
const HEADER_NAME = /^[\x21-\x39\x3b-\x7e]{1,76}$/;

/** `YYYY-MM-DD` (or a Date / TOML local date / ms) → ms at 00:00 UTC; undefined when it is not a real day. */
export function sunsetDay(v: unknown): number | undefined {
  let text: string;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return undefined;
    text = new Date(v).toISOString().slice(0, 10);
  } else if (v instanceof Date) {
    if (Number.isNaN(v.getTime())) return undefined;
    text = v.toISOString().slice(0, 10);
  } else if (typeof v === 'string' || (typeof v === 'object' && v !== null)) {
    // smol-toml's TomlDate stringifies as `2027-03-01` for a local date
    text = String(v).trim().slice(0, 10);
  } else return undefined;
  const m = DAY.exec(text);
  if (!m) return undefined;
  const at = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  return new Date(at).toISOString().slice(0, 10) === text ? at : undefined;
}

/** Problems with a sunset configuration, one line each (empty when usable). */
export function sunsetProblems(o: SunsetOptions): string[] {
  const problems: string[] = [];
  for (const [k, v] of Object.entries(o.entries)) {
    if (k.trim() === '' || /[\s\x00-\x1f\x7f]/.test(k)) problems.push(`pop_before_smtp_sunset: key ${JSON.stringify(k)} must be a domain, a user or "*" without spaces`);
    if (sunsetDay(v) === undefined) problems.push(`pop_before_smtp_sunset.${k}: ${JSON.stringify(String(v))} is not a date; write it as 2027-03-01`);
  }
  if (o.code !== undefined && (o.code < 500 || o.code > 599 || !Number.isInteger(o.code))) problems.push(`pop_before_smtp_sunset_code: ${o.code} must be a 5xx code (the grant is refused for good)`);
  if (o.dsn !== undefined && !/^5\.\d{1,3}\.\d{1,3}$/.test(o.dsn)) problems.push(`pop_before_smtp_sunset_dsn: ${JSON.stringify(o.dsn)} must be an enhanced status code 5.X.Y`);
  if (o.header !== undefined && o.header !== '' && !HEADER_NAME.test(o.header)) problems.push(`pop_before_smtp_sunset_header: ${JSON.stringify(o.header)} is not a header field name`);
  if (o.text !== undefined && (o.text.trim() === '' || /[\x00-\x1f\x7f]/.test(o.text) || o.text.length > 400)) {
    problems.push('pop_before_smtp_sunset_text: must be non-empty, one line, at most 400 characters');
  }
  return problems;
}

function domainOf(address: string): string | undefined {
  const at = address.lastIndexOf('@');
  return at === -1 || at === address.length - 1 ? undefined : address.slice(at + 1);
}

export class SunsetPolicy {
  readonly header: string | undefined;
  private readonly logins = new Map<string, SunsetHit>();
  private readonly domains = new Map<string, SunsetHit>();
  private readonly all: SunsetHit | undefined;
  private readonly text: string;
  private readonly code: number;
  private readonly dsn: string;

  constructor(o: SunsetOptions) {
    const problems = sunsetProblems(o);
    if (problems.length > 0) throw new Error(problems.join('; '));
    let all: SunsetHit | undefined;
    for (const [rawKey, v] of Object.entries(o.entries)) {
      const key = rawKey.trim().toLowerCase();
      const at = sunsetDay(v)!;
      const hit: SunsetHit = { key: rawKey, at, date: new Date(at).toISOString().slice(0, 10) };
      if (key === '*') all = hit;
      else if (key.includes('@')) this.logins.set(key.startsWith('@') ? key : key, hit);
      else if (key.includes('.')) this.domains.set(key, hit);
      else this.logins.set(key, hit);
    }
    // `@example.com` (Postfix's domain notation) is a domain too
    for (const [k, hit] of [...this.logins]) {
      if (k.startsWith('@')) {
        this.logins.delete(k);
        this.domains.set(k.slice(1), hit);
      }
    }
    this.all = all;
    this.header = o.header === '' ? undefined : o.header;
    this.text = o.text ?? DEFAULT_SUNSET_TEXT;
    this.code = o.code ?? 550;
    this.dsn = o.dsn ?? '5.7.1';
  }

  get size(): number {
    return this.logins.size + this.domains.size + (this.all ? 1 : 0);
  }

  /** The entry that applies to a grant's login and the envelope sender, most specific first. */
  match(login: string | null | undefined, sender: string | undefined): SunsetHit | undefined {
    const l = login?.toLowerCase();
    const s = sender === undefined || sender === '' ? undefined : sender.toLowerCase();
    if (l !== undefined) {
      const h = this.logins.get(l);
      if (h) return h;
    }
    if (s !== undefined) {
      const h = this.logins.get(s);
      if (h) return h;
    }
    const ld = l === undefined ? undefined : domainOf(l);
    if (ld !== undefined) {
      const h = this.domains.get(ld);
      if (h) return h;
    }
    const sd = s === undefined ? undefined : domainOf(s);
    if (sd !== undefined) {
      const h = this.domains.get(sd);
      if (h) return h;
    }
    return this.all;
  }

  /** The 5xx a client gets once its grant no longer counts. */
  reply(hit: SunsetHit): Reply {
    const text = this.text.replaceAll('{date}', hit.date).replaceAll('{key}', printable(hit.key));
    return makeReply(this.code, this.dsn, text);
  }

  /** The header line (without CRLF) added before the date, or undefined. */
  headerLine(hit: SunsetHit): string | undefined {
    if (this.header === undefined) return undefined;
    return `${this.header}: POP-before-SMTP relaying ends on ${hit.date} for ${printable(hit.key)}; please turn on SMTP authentication`;
  }
}
