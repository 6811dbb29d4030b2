// The annotated sample-log format of test/fixtures/logs/<format>.log (fail2ban's tests/files/logs idea): every
// log line is preceded by exactly one `#>` line saying what the line must yield, and `#!` lines set how the
// following lines are read.
//
//   # free comment
//   #! prefix=syslog now=2026-11-21T20:00:00Z ident=dovecot-rg     settings for the lines that follow; keys:
//                                                                   prefix (a PREFIXES name), now (ISO time:
//                                                                   the reader's clock), ident (comma list that
//                                                                   overrides the format's idents; `default`
//                                                                   restores them). Unnamed keys keep their value.
//   #> grant ip=127.0.0.7 user=alice service=pop3 session=<id>      a login for that ip (normalized) and exactly
//                                                                   that user/service/session (a key left out
//                                                                   means "none"); `dropped`: the parser must
//                                                                   have dropped the user (userDropped set)
//   #> none                                                         nothing (any reason but `pending`);
//   #> none reason=ident                                            ... for exactly that NoMatchReason
//   #> logout session=<id>   |   #> logout ip=... user=...         a session end with exactly these fields
//   #> pending                                                      the first line of a two-line login
//   any of them + the word `hostile`                                a sample built to fool the parser
//
// Values are bare words or JSON strings (`user="x [6.6.6.6] alice"`). The line after a `#>` line is the log
// line, byte for byte (a trailing CR is dropped, as the tailer does). A log line without its `#>` line, a `#>`
// line without a log line, or an unknown key is an error, so a sample can never be silently skipped.
//
// Security: test input only; the parser under test gets the log line exactly as written here.

import { PREFIXES } from '../../src/sources/prefix.ts';

export type SampleKind = 'grant' | 'none' | 'logout' | 'pending';

export interface SampleExpectation {
  readonly kind: SampleKind;
  readonly ip?: string;
  readonly user?: string;
  readonly service?: string;
  readonly session?: string;
  /** for `none`: the exact NoMatchReason required */
  readonly reason?: string;
  /** for `grant`: the parser must report userDropped */
  readonly dropped: boolean;
  readonly hostile: boolean;
}

export interface SampleSettings {
  readonly prefix: string;
  readonly now: number;
  /** undefined: the format's own idents */
  readonly idents: readonly string[] | undefined;
}

export interface SampleLine {
  /** 1-based line number of the log line in the sample file */
  readonly lineNo: number;
  readonly line: string;
  readonly expect: SampleExpectation;
  readonly settings: SampleSettings;
}

export class SampleFileError extends Error {
  constructor(file: string, lineNo: number, message: string) {
    super(`${file}:${lineNo}: ${message}`);
    this.name = 'SampleFileError';
  }
}

export const DEFAULT_SETTINGS: SampleSettings = { prefix: 'syslog', now: Date.parse('2026-11-21T20:00:00Z'), idents: undefined };

const KEYS: Record<SampleKind, readonly string[]> = {
  grant: ['ip', 'user', 'service', 'session'],
  logout: ['ip', 'user', 'session'],
  none: ['reason'],
  pending: [],
};
const FLAGS: Record<SampleKind, readonly string[]> = {
  grant: ['hostile', 'dropped'],
  logout: ['hostile'],
  none: ['hostile'],
  pending: ['hostile'],
};

/** `key=value` / `key="json"` / `word` tokens of an annotation or directive. */
function tokens(text: string, fail: (m: string) => never): { key: string; value: string | undefined }[] {
  const out: { key: string; value: string | undefined }[] = [];
  const re = /\s*([A-Za-z_]+)(?:=("(?:[^"\\]|\\.)*"|\S*))?(?=\s|$)/y;
  let at = 0;
  while (at < text.length) {
    if (/^\s*$/.test(text.slice(at))) break;
    re.lastIndex = at;
    const m = re.exec(text);
    if (!m) fail(`cannot read ${JSON.stringify(text.slice(at).trim())}`);
    let value = m[2];
    if (value !== undefined && value.startsWith('"')) {
      try {
        value = JSON.parse(value) as string;
      } catch {
        fail(`bad JSON string ${value}`);
      }
    }
    out.push({ key: m[1]!, value });
    at = re.lastIndex;
  }
  return out;
}

function parseAnnotation(text: string, fail: (m: string) => never): SampleExpectation {
  const [head, ...rest] = tokens(text, fail);
  if (!head || head.value !== undefined || !Object.hasOwn(KEYS, head.key)) {
    fail(`an annotation starts with one of ${Object.keys(KEYS).join(', ')}`);
  }
  const kind = head.key as SampleKind;
  const fields: Record<string, string> = {};
  const flags = new Set<string>();
  for (const t of rest) {
    if (t.value === undefined) {
      if (!FLAGS[kind].includes(t.key)) fail(`unknown word ${JSON.stringify(t.key)} for ${kind} (allowed: ${FLAGS[kind].join(', ')})`);
      flags.add(t.key);
    } else {
      if (!KEYS[kind].includes(t.key)) fail(`unknown key ${JSON.stringify(t.key)} for ${kind} (allowed: ${KEYS[kind].join(', ') || 'none'})`);
      if (Object.hasOwn(fields, t.key)) fail(`key ${t.key} given twice`);
      fields[t.key] = t.value;
    }
  }
  if (kind === 'grant' && fields.ip === undefined) fail('a grant names its ip');
  return { kind, ...fields, dropped: flags.has('dropped'), hostile: flags.has('hostile') };
}

function applyDirective(text: string, cur: SampleSettings, fail: (m: string) => never): SampleSettings {
  let next: SampleSettings = cur;
  for (const t of tokens(text, fail)) {
    if (t.value === undefined || t.value === '') fail(`directive ${t.key} needs a value`);
    switch (t.key) {
      case 'prefix':
        if (!Object.hasOwn(PREFIXES, t.value)) fail(`unknown prefix ${JSON.stringify(t.value)}`);
        next = { ...next, prefix: t.value };
        break;
      case 'now': {
        const now = Date.parse(t.value);
        if (Number.isNaN(now)) fail(`now=${t.value} is not a time`);
        next = { ...next, now };
        break;
      }
      case 'ident':
        next = { ...next, idents: t.value === 'default' ? undefined : t.value.split(',').filter((s) => s !== '') };
        break;
      default:
        fail(`unknown directive key ${JSON.stringify(t.key)} (prefix, now, ident)`);
    }
  }
  return next;
}

/** Parses a sample file; throws SampleFileError at the first malformed line. */
export function parseSampleFile(text: string, file = 'sample'): SampleLine[] {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const out: SampleLine[] = [];
  let settings = DEFAULT_SETTINGS;
  let pending: { expect: SampleExpectation; lineNo: number } | undefined;
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const raw = lines[i]!;
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    const fail = (m: string): never => {
      throw new SampleFileError(file, lineNo, m);
    };
    if (pending !== undefined) {
      if (line.startsWith('#>') || line.startsWith('#!')) fail(`the annotation of line ${pending.lineNo} must be followed by its log line`);
      out.push({ lineNo, line, expect: pending.expect, settings });
      pending = undefined;
      continue;
    }
    if (line.startsWith('#>')) pending = { expect: parseAnnotation(line.slice(2), fail), lineNo };
    else if (line.startsWith('#!')) settings = applyDirective(line.slice(2), settings, fail);
    else if (line.startsWith('#') || line.trim() === '') continue;
    else fail(`log line without a #> annotation: ${JSON.stringify(line.length > 80 ? `${line.slice(0, 80)}…` : line)}`);
  }
  if (pending !== undefined) throw new SampleFileError(file, pending.lineNo, 'annotation at the end of the file without its log line');
  return out;
}
