// LineParser: one log line → what it means for the access map (a login, a logout, or nothing, and why).
//
// prefix (configured, never guessed) → ident filter → the format's patterns (cheap substring needle first,
// then the anchored regex) → normalizeIp. Two-line formats (popa3d, old vm-pop3d) keep the IP of each
// process's `connect` line until its `auth` line, in a bounded table that forgets entries after ten minutes.
//
// Security: the line is untrusted. Patterns are anchored at both ends and take the IP from the server's
// last field; the captured IP must pass normalizeIp (else the line yields nothing); a username longer than
// MAX_USER or holding control characters is not trusted as a login name (the grant is made without a
// user, so sender-login checks treat the client as not logged in).

import { normalizeIp } from '../net/index.ts';
import { RelaygateError } from '../errors.ts';
import type { LogFormat, LogPattern } from './formats/types.ts';
import { PREFIXES, type PrefixParser, type PrefixResult } from './prefix.ts';

export const MAX_USER = 256;
const PENDING_TTL_MS = 10 * 60_000;
const PENDING_MAX = 10_000;

export type ParseResult =
  | {
      readonly kind: 'login';
      readonly pattern: string;
      readonly ip: string;
      readonly user: string | undefined;
      readonly service: string | undefined;
      readonly session: string | undefined;
      /** the line's own time (ms) when the prefix has one */
      readonly time: number | undefined;
      /** why the user was dropped, when it was */
      readonly userDropped?: string;
    }
  | {
      readonly kind: 'logout';
      readonly pattern: string;
      readonly session: string | undefined;
      readonly ip: string | undefined;
      readonly user: string | undefined;
      readonly time: number | undefined;
    }
  | { readonly kind: 'none'; readonly reason: NoMatchReason; readonly pattern?: string; readonly detail?: string };

export type NoMatchReason =
  /** the line does not have the configured prefix */
  | 'prefix'
  /** another program's line */
  | 'ident'
  /** no pattern of the format matched */
  | 'no_match'
  /** a pattern matched but the captured IP is not a literal address */
  | 'bad_ip'
  /** first line of a two-line login, remembered until its second line */
  | 'pending'
  /** an `auth` line whose `connect` line was never seen (or is too old) */
  | 'unpaired';

export interface LineParserOptions {
  readonly format: LogFormat;
  /** prefix name from PREFIXES */
  readonly prefix: string;
  /** syslog idents to accept instead of the format's defaults */
  readonly idents?: readonly string[] | undefined;
  /** an operator's own pattern (validated by compileCustomPattern), tried before the format's */
  readonly custom?: LogPattern | undefined;
}

export class LineParser {
  readonly format: LogFormat;
  private readonly prefix: PrefixParser;
  private readonly idents: ReadonlySet<string> | undefined;
  private readonly patterns: readonly LogPattern[];
  /**
   * Every pattern's needle, when every pattern has one (undefined otherwise, e.g. with a custom pattern): a
   * line holding none of them can only parse as `none` (the message is a substring of the line), so bulk
   * readers may skip such lines before the prefix regex, or before decoding them at all (the tailer does).
   */
  readonly needles: readonly string[] | undefined;
  /** `ident[pid]` → IP and time of its connect line */
  private readonly pending = new Map<string, { ip: string; at: number }>();

  constructor(opts: LineParserOptions) {
    const prefix = PREFIXES[opts.prefix];
    if (prefix === undefined) throw new RelaygateError('RG_ERR_CONFIG_INVALID', `unknown prefix ${JSON.stringify(opts.prefix)}; known: ${Object.keys(PREFIXES).join(', ')}`);
    this.prefix = prefix;
    this.format = opts.format;
    const idents = opts.idents ?? opts.format.idents;
    // `none` and `logpath` carry no ident; an ident filter would reject every line.
    this.idents = idents.length > 0 ? new Set(idents) : undefined;
    this.patterns = opts.custom ? [opts.custom, ...opts.format.patterns] : opts.format.patterns;
    this.needles = this.patterns.every((p) => p.needle !== '') ? this.patterns.map((p) => p.needle) : undefined;
  }

  /**
   * `needles` without those only logout patterns need, for a reader that does not track logouts (a logout
   * line then changes nothing): in a busy mail log the session ends are as many as the logins, and they
   * need not even be decoded. A line that can match any other pattern still holds one of these.
   */
  needlesWithoutLogouts(): readonly string[] | undefined {
    if (this.needles === undefined) return undefined;
    const kept = this.patterns.filter((p) => p.kind !== 'logout').map((p) => p.needle);
    return kept.length > 0 ? [...new Set(kept)] : this.needles;
  }

  /** `now` resolves year-less timestamps and ages the two-line table. */
  parse(line: string, now: number): ParseResult {
    const p = this.prefix.parse(line, now);
    if (p === undefined) return { kind: 'none', reason: 'prefix' };
    return this.parseFields(p, now);
  }

  /**
   * For sources whose records already carry time, program and pid as separate fields (journald): the
   * message is matched exactly as a prefixed line's message would be.
   */
  parseFields(p: PrefixResult, now: number): ParseResult {
    if (p.ident !== undefined && this.idents !== undefined && !this.idents.has(p.ident)) return { kind: 'none', reason: 'ident' };
    const msg = p.message;
    for (const pat of this.patterns) {
      if (pat.needle !== '' && !msg.includes(pat.needle)) continue;
      const m = pat.re.exec(msg);
      if (m === null) continue;
      const g = (m.groups ?? {}) as Record<string, string | undefined>;
      const time = p.time;
      switch (pat.kind) {
        case 'login': {
          const ip = normalizeIp(g.ip ?? '');
          if (ip === undefined) return { kind: 'none', reason: 'bad_ip', pattern: pat.name, detail: g.ip };
          return this.login(pat, ip, g.user, g.service, g.session, time);
        }
        case 'logout':
          // The user of a logout line is as untrusted as a login's: same length and control-character rule.
          return { kind: 'logout', pattern: pat.name, session: g.session, ip: g.ip === undefined ? undefined : normalizeIp(g.ip), user: checkUser(g.user).user, time };
        case 'connect': {
          const ip = normalizeIp(g.ip ?? '');
          if (ip === undefined) return { kind: 'none', reason: 'bad_ip', pattern: pat.name, detail: g.ip };
          this.remember(`${p.ident ?? ''}[${p.pid ?? ''}]`, ip, time ?? now);
          return { kind: 'none', reason: 'pending', pattern: pat.name };
        }
        case 'auth': {
          const key = `${p.ident ?? ''}[${p.pid ?? ''}]`;
          const seen = this.pending.get(key);
          this.pending.delete(key);
          if (seen === undefined || p.pid === undefined || (time ?? now) - seen.at > PENDING_TTL_MS) {
            return { kind: 'none', reason: 'unpaired', pattern: pat.name };
          }
          return this.login(pat, seen.ip, g.user, g.service, g.session, time);
        }
      }
    }
    return { kind: 'none', reason: 'no_match' };
  }

  private login(pat: LogPattern, ip: string, rawUser: string | undefined, service: string | undefined, session: string | undefined, time: number | undefined): ParseResult {
    const { user, userDropped } = checkUser(rawUser);
    return {
      kind: 'login',
      pattern: pat.name,
      ip,
      user,
      service: (service ?? pat.service)?.toLowerCase(),
      session,
      time,
      ...(userDropped === undefined ? {} : { userDropped }),
    };
  }

  private remember(key: string, ip: string, at: number): void {
    this.pending.delete(key);
    this.pending.set(key, { ip, at });
    // Bounded: a flood of connect lines without logins cannot grow the table; oldest entries go first.
    while (this.pending.size > PENDING_MAX) this.pending.delete(this.pending.keys().next().value!);
    const first = this.pending.values().next().value;
    if (first !== undefined && at - first.at > PENDING_TTL_MS) {
      for (const [k, v] of this.pending) {
        if (at - v.at <= PENDING_TTL_MS) break;
        this.pending.delete(k);
      }
    }
  }
}

// C0 and C1 controls, DEL, and the Unicode line/paragraph separators: any of them in a username is either a
// log-injection attempt or a name no mail client sends, and all of them can split or disguise a log line.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f-\x9f\u2028\u2029]/;

/** The username as trusted for a grant: empty → none; too long or with control characters → none, and why. */
function checkUser(raw: string | undefined): { user: string | undefined; userDropped?: string } {
  if (raw === undefined || raw.length === 0) return { user: undefined };
  if (raw.length > MAX_USER) return { user: undefined, userDropped: `username longer than ${MAX_USER} characters` };
  if (CONTROL.test(raw)) return { user: undefined, userDropped: 'username holds control characters' };
  return { user: raw };
}

/**
 * An operator's pattern from `[[watch]] pattern = "..."`: must be anchored at both ends and capture `ip`
 * (and may capture `user`, `service`, `session`). Throws a message naming what is wrong.
 */
export function compileCustomPattern(source: string): LogPattern {
  if (!source.startsWith('^')) throw new Error('pattern must be anchored at the start with ^ (right after the line prefix)');
  if (!source.endsWith('$') || source.endsWith('\\$')) throw new Error('pattern must be anchored at the end of the line with $');
  let re: RegExp;
  try {
    re = new RegExp(source);
  } catch (err) {
    throw new Error(`pattern is not a valid regular expression: ${(err as Error).message}`);
  }
  if (!source.includes('(?<ip>')) throw new Error('pattern must capture the client address in a named group (?<ip>...)');
  const problem = lintPattern(re);
  if (problem) throw new Error(`pattern is unsafe: ${problem}`);
  return { name: 'custom', kind: 'login', re, needle: '' };
}

/**
 * The security lint every pattern passes (test/sources/formats.test.ts runs it on the registry):
 * anchored at both ends with no top-level alternation (which would let one branch escape the anchors) and
 * no `m` flag; before the IP capture, no catch-all (`.*`, `.+`, `.{n,}`, `\S+`, `\S*`, `[^\s]*`,
 * `[\s\S]*`, `[^]`) outside the `user` group, whose greed is what makes the last, server-written address the
 * one captured; an IP group of address characters only.
 * Returns a description of the problem, or undefined.
 */
export function lintPattern(re: RegExp): string | undefined {
  const src = re.source;
  if (!src.startsWith('^')) return 'not anchored at the start (^)';
  if (!src.endsWith('$') || isEscaped(src, src.length - 1)) return 'not anchored at the end ($)';
  if (re.flags.includes('m')) return 'the m flag lets ^ and $ match inside the line';
  if (hasTopLevelAlternation(src)) return 'a top-level | lets one alternative escape the ^...$ anchors (wrap the alternatives in (?:...))';
  const ipAt = src.indexOf('(?<ip>');
  if (ipAt === -1) return undefined; // auth/logout patterns without an IP
  const before = withoutGroup(src.slice(0, ipAt), 'user');
  const catchAll = CATCH_ALL.exec(before);
  if (catchAll) return `catch-all ${catchAll[0]} before the IP capture`;
  const ipGroup = src.slice(ipAt + '(?<ip>'.length, matchingParen(src, ipAt));
  if (ipGroup.includes('[^')) return 'the IP group uses a negated character class';
  if (/(?<!\\)\.|\\S|\\w|\\W|\\D/.test(ipGroup.replace(/\[(?:\\.|[^\]])*\]/g, ''))) return 'the IP group accepts more than address characters';
  return undefined;
}

// Anything-goes atoms followed by an open-ended quantifier; `[^]` matches any character on its own.
const OPEN = String.raw`(?:[*+]|\{\d*,\d*\})`;
const CATCH_ALL = new RegExp(
  String.raw`(?<!\\)\.${OPEN}|\\S${OPEN}|\[\^\\s\]${OPEN}|\[(?:\\s\\S|\\S\\s|\\w\\W|\\W\\w|\\d\\D|\\D\\d)\]${OPEN}|\[\^\]`,
);

function isEscaped(src: string, at: number): boolean {
  let n = 0;
  for (let i = at - 1; i >= 0 && src[i] === '\\'; i--) n++;
  return n % 2 === 1;
}

function hasTopLevelAlternation(src: string): boolean {
  let depth = 0;
  for (let i = 0; i < src.length; i++) {
    const c = src[i];
    if (c === '\\') {
      i++;
      continue;
    }
    if (c === '[') {
      for (i++; i < src.length && src[i] !== ']'; i++) if (src[i] === '\\') i++;
      continue;
    }
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === '|' && depth === 0) return true;
  }
  return false;
}

function matchingParen(src: string, open: number): number {
  let depth = 0;
  for (let i = open; i < src.length; i++) {
    const c = src[i];
    if (c === '\\') {
      i++;
      continue;
    }
    if (c === '[') {
      // skip a character class
      for (i++; i < src.length && src[i] !== ']'; i++) if (src[i] === '\\') i++;
      continue;
    }
    if (c === '(') depth++;
    else if (c === ')' && --depth === 0) return i;
  }
  return src.length - 1;
}

function withoutGroup(src: string, name: string): string {
  const at = src.indexOf(`(?<${name}>`);
  if (at === -1) return src;
  return src.slice(0, at) + src.slice(matchingParen(src, at) + 1);
}
