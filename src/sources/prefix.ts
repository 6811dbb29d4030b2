// Line prefixes: how the syslog daemon (or the server itself) writes time, host and program before the
// message. The prefix is chosen by configuration, never guessed from the first line: a Dovecot log_path
// prefix and a syslog prefix can look alike (shared reference: log-formats.md).
//
// Output: the message (what the POP/IMAP server wrote), the line's time in ms (when the prefix has one),
// and the program name and pid when the prefix carries them.
// Security: prefixes are written by the syslog daemon, not by clients, but the whole line is still untrusted:
// every pattern is anchored at the start of the line, and the message is handed on whole for the format's
// own anchored patterns (which also anchor at the end of the line).

export interface PrefixResult {
  /** ms since the epoch; undefined when the prefix carries no time (the reader's clock is used then) */
  readonly time: number | undefined;
  readonly host?: string | undefined;
  /** the syslog tag (program name), e.g. `dovecot`, `pop3d`, `cyrus/imap` */
  readonly ident?: string | undefined;
  readonly pid?: number | undefined;
  readonly message: string;
}

export interface PrefixParser {
  readonly name: string;
  readonly description: string;
  readonly example: string;
  /** `now` resolves year-less timestamps (BSD syslog, Dovecot log_path) */
  parse(line: string, now: number): PrefixResult | undefined;
}

const MONTHS: Record<string, number> = { Jan: 0, Feb: 1, Mar: 2, Apr: 3, May: 4, Jun: 5, Jul: 6, Aug: 7, Sep: 8, Oct: 9, Nov: 10, Dec: 11 };

/**
 * A BSD timestamp has no year: take the current one, or the previous one when that would put the line
 * in the future (a December line read in January). One day of slack absorbs clock skew between hosts.
 * Local time, as syslog writes it. Undefined for a stamp that is no date (`Foo 21`, `Feb 30`, `25:00:00`).
 */
export function bsdTime(mon: string, day: string, hh: string, mm: string, ss: string, now: number): number | undefined {
  const month = MONTHS[mon];
  if (month === undefined) return undefined;
  const year = new Date(now).getFullYear();
  let t = localTime(year, month, Number(day), Number(hh), Number(mm), Number(ss));
  // Feb 29 exists in some years only: try the previous year before giving up.
  if (t === undefined || t > now + 86_400_000) t = localTime(year - 1, month, Number(day), Number(hh), Number(mm), Number(ss));
  return t;
}

/** A local date-time, or undefined when a field is out of range (Date would silently roll it over). */
function localTime(year: number, month: number, day: number, hh: number, mm: number, ss: number): number | undefined {
  if (hh > 23 || mm > 59 || ss > 60) return undefined; // 60: a leap second as syslog may print it
  const d = new Date(year, month, day, hh, mm, Math.min(ss, 59));
  if (d.getFullYear() !== year || d.getMonth() !== month || d.getDate() !== day) return undefined;
  return d.getTime() + (ss === 60 ? 1000 : 0);
}

// `ident[pid]: ` — the tag syslog writes. Idents may contain `/` (cyrus/imap), `.`, `-`, `_`.
const TAG = String.raw`(?<ident>[A-Za-z0-9_./-]{1,64})(?:\[(?<pid>\d{1,10})\])?: `;
const BSD_TIME = String.raw`(?<mon>[A-Z][a-z]{2}) (?<day>[ \d]?\d) (?<hh>\d\d):(?<mm>\d\d):(?<ss>\d\d)`;
const HOST = String.raw`(?<host>[^\s\[\]:]{1,255})`;

const SYSLOG_RE = new RegExp(String.raw`^${BSD_TIME} ${HOST} ${TAG}(?<message>.*)$`, 's');
const RFC3339_RE = new RegExp(
  String.raw`^(?<ts>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)) ${HOST} ${TAG}(?<message>.*)$`,
  's',
);
const LOGPATH_RE = new RegExp(String.raw`^${BSD_TIME} (?<message>.*)$`, 's');
// Dovecot 1.x log_path: `dovecot: 2006-02-20 10:15:02 Info: pop3-login: ...`
const LOGPATH_OLD_RE = /^dovecot: (?<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (?:Info|Warning|Error|Fatal|Panic|Debug): (?<message>.*)$/s;
// daemontools/multilog: `@400000004c91b044077a9e94 ` then, optionally, the program tag.
const TAI64N_RE = new RegExp(String.raw`^@(?<tai>[0-9a-f]{24}) (?:${TAG})?(?<message>.*)$`, 's');

function groupsOf(m: RegExpExecArray): Record<string, string | undefined> {
  return m.groups as Record<string, string | undefined>;
}

function tagged(g: Record<string, string | undefined>, time: number | undefined): PrefixResult {
  return { time, host: g.host, ident: g.ident, pid: g.pid === undefined ? undefined : Number(g.pid), message: g.message! };
}

/** TAI64N label → ms. TAI runs 10 s + leap seconds ahead of UTC; tai64nlocal subtracts the 10 s, as we do. */
export function tai64nTime(hex: string): number | undefined {
  const secs = BigInt(`0x${hex.slice(0, 16)}`) - (1n << 62n) - 10n;
  const nanos = Number.parseInt(hex.slice(16), 16);
  if (secs < 0n || nanos > 999_999_999) return undefined;
  return Number(secs) * 1000 + Math.floor(nanos / 1e6);
}

export const PREFIXES: Readonly<Record<string, PrefixParser>> = {
  syslog: {
    name: 'syslog',
    description: 'BSD syslog (traditional rsyslog/syslog-ng template): month day time host ident[pid]: — year inferred',
    example: 'Nov 21 16:33:39 mx dovecot: ',
    parse(line, now) {
      const m = SYSLOG_RE.exec(line);
      if (!m) return undefined;
      const g = groupsOf(m);
      // A stamp that is no date is not a syslog prefix (else the line would count from the reader's clock).
      const time = bsdTime(g.mon!, g.day!.trim(), g.hh!, g.mm!, g.ss!, now);
      return time === undefined ? undefined : tagged(g, time);
    },
  },
  rfc3339: {
    name: 'rfc3339',
    description: 'RFC 3339 timestamps (Debian 12 rsyslog default): 2026-11-21T16:33:38.969450+00:00 host ident[pid]:',
    example: '2026-11-21T16:33:38.969450+00:00 mx dovecot: ',
    parse(line) {
      const m = RFC3339_RE.exec(line);
      if (!m) return undefined;
      const g = groupsOf(m);
      const t = Date.parse(g.ts!.replace(' ', 'T'));
      return Number.isNaN(t) ? undefined : tagged(g, t);
    },
  },
  logpath: {
    name: 'logpath',
    description: "Dovecot's own log_path file: month day time, no host or ident (also Dovecot 1.x `dovecot: YYYY-MM-DD HH:MM:SS Info:`)",
    example: 'Nov 21 16:31:28 pop3-login: Info: ',
    parse(line, now) {
      const m = LOGPATH_RE.exec(line);
      if (m) {
        const g = groupsOf(m);
        const time = bsdTime(g.mon!, g.day!.trim(), g.hh!, g.mm!, g.ss!, now);
        return time === undefined ? undefined : { time, message: g.message! };
      }
      const o = LOGPATH_OLD_RE.exec(line);
      if (!o) return undefined;
      const g = groupsOf(o);
      const [date, clock] = g.ts!.split(' ');
      const [y, mo, d] = date!.split('-').map(Number);
      const [hh, mm, ss] = clock!.split(':').map(Number);
      const time = localTime(y!, mo! - 1, d!, hh!, mm!, ss!);
      return time === undefined ? undefined : { time, message: g.message! };
    },
  },
  tai64n: {
    name: 'tai64n',
    description: 'daemontools/multilog TAI64N label, optionally followed by ident[pid]:',
    example: '@400000004c91b044077a9e94 ',
    parse(line) {
      const m = TAI64N_RE.exec(line);
      if (!m) return undefined;
      const g = groupsOf(m);
      const time = tai64nTime(g.tai!);
      return time === undefined ? undefined : tagged(g, time);
    },
  },
  none: {
    name: 'none',
    description: 'no prefix: the line is the message (stdin pipes that already stripped it); the reader’s clock gives the time',
    example: '',
    parse(line) {
      return { time: undefined, message: line };
    },
  },
};

export type PrefixName = keyof typeof PREFIXES;
