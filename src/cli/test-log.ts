// `relaygate test-log`: what each line of a log yields under a format, like fail2ban-regex. Reads a file (or
// stdin with `-`) line by line as a stream, runs every line through the same LineParser the daemon uses, prints
// `L<n>: grant ip=... user=... service=... [pattern]` for each line that yields something (every line with
// --verbose: `L<n>: none (<reason>)`), then totals per pattern and per reason. Exit status 1 when no line
// yielded a grant or a logout, so a script can tell "this format does not fit this log" (fail2ban-regex's use).
//
// Security: the log is untrusted input: lines are split on LF only (a CR inside a line stays, as in the tailer),
// cut at the tailer's 16 KiB limit, and every value shown is quoted with control characters escaped, so a hostile
// username cannot rewrite the operator's terminal. The command never writes the access map.

import { open } from 'node:fs/promises';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { RelaygateError } from '../errors.ts';
import { FORMATS } from '../sources/formats/index.ts';
import { LineParser, compileCustomPattern, type ParseResult } from '../sources/parser.ts';
import { PREFIXES } from '../sources/prefix.ts';
import type { LogPattern } from '../sources/formats/types.ts';

export interface TestLogOptions {
  /** a FORMATS name */
  format: string;
  /** a PREFIXES name; default `syslog` */
  prefix?: string;
  /** comma-separated syslog idents replacing the format's */
  ident?: string;
  /** an operator's own anchored pattern, as `[[watch]] pattern` */
  pattern?: string;
  /** a path, or `-` for stdin */
  file: string;
  /** one JSON object per line of output, then a summary object */
  json?: boolean;
  /** also print the lines that yield nothing */
  verbose?: boolean;
}

/** The tailer hands over at most this much of a line (src/sources/tailer.ts, maxLineBytes); so do we. */
const MAX_LINE_BYTES = 16 * 1024;

interface Totals {
  lines: number;
  grants: number;
  logouts: number;
  nothing: number;
  cut: number;
  byPattern: Map<string, number>;
  byReason: Map<string, number>;
}

export async function testLogCommand(opts: TestLogOptions): Promise<void> {
  const parser = buildParser(opts);
  const input = await openInput(opts.file);
  const totals: Totals = { lines: 0, grants: 0, logouts: 0, nothing: 0, cut: 0, byPattern: new Map(), byReason: new Map() };
  const now = Date.now();

  if (!opts.json) {
    const idents = parser.format.idents.join(',');
    await out(`test-log: format ${opts.format}, prefix ${opts.prefix ?? 'syslog'}, idents ${opts.ident ?? idents}${opts.pattern === undefined ? '' : ', custom pattern first'}\n`);
  }
  try {
    for await (const { lineNo, line, cut } of readLines(input)) {
      totals.lines++;
      if (cut) totals.cut++;
      const r = parser.parse(line, now);
      count(totals, r);
      const yields = r.kind !== 'none';
      if (!yields && !opts.verbose) continue;
      await out(opts.json ? `${JSON.stringify(jsonLine(lineNo, r, cut))}\n` : `${textLine(lineNo, r, cut)}\n`);
    }
  } catch (err) {
    if (err instanceof RelaygateError) throw err;
    throw new RelaygateError('RG_ERR_USAGE', `cannot read ${JSON.stringify(opts.file)}: ${(err as Error).message}`, { cause: err });
  } finally {
    if (input !== process.stdin) input.destroy();
  }

  await out(opts.json ? `${JSON.stringify({ summary: summaryJson(totals) })}\n` : summaryText(totals));
  process.exitCode = totals.grants + totals.logouts === 0 ? 1 : 0;
}

function buildParser(opts: TestLogOptions): LineParser {
  if (!Object.hasOwn(FORMATS, opts.format)) {
    throw new RelaygateError('RG_ERR_USAGE', `--format ${JSON.stringify(opts.format)}: unknown log format; known: ${Object.keys(FORMATS).join(', ')}`);
  }
  const prefix = opts.prefix ?? 'syslog';
  if (!Object.hasOwn(PREFIXES, prefix)) {
    throw new RelaygateError('RG_ERR_USAGE', `--prefix ${JSON.stringify(prefix)}: unknown prefix; known: ${Object.keys(PREFIXES).join(', ')}`);
  }
  let idents: string[] | undefined;
  if (opts.ident !== undefined) {
    idents = opts.ident.split(',').map((s) => s.trim()).filter((s) => s !== '');
    // An empty list would switch the ident filter off altogether: refuse it rather than match every program.
    if (idents.length === 0) throw new RelaygateError('RG_ERR_USAGE', '--ident: give at least one syslog ident (comma-separated)');
  }
  let custom: LogPattern | undefined;
  if (opts.pattern !== undefined) {
    try {
      custom = compileCustomPattern(opts.pattern);
    } catch (err) {
      throw new RelaygateError('RG_ERR_USAGE', `--pattern: ${(err as Error).message}`);
    }
  }
  return new LineParser({ format: FORMATS[opts.format]!, prefix, idents, custom });
}

async function openInput(file: string): Promise<Readable> {
  if (file === '-') return process.stdin;
  try {
    const fh = await open(file, 'r');
    return fh.createReadStream();
  } catch (err) {
    throw new RelaygateError('RG_ERR_USAGE', `cannot read ${JSON.stringify(file)}: ${(err as Error).message}`, { cause: err });
  }
}

/** Lines split on LF, a trailing CR dropped, each cut at MAX_LINE_BYTES (the rest of a long line skipped). */
async function* readLines(input: Readable): AsyncGenerator<{ lineNo: number; line: string; cut: boolean }> {
  let held: Buffer[] = [];
  let heldBytes = 0;
  let skipping = false;
  let lineNo = 0;
  const finish = (parts: Buffer[], cut: boolean): { lineNo: number; line: string; cut: boolean } => {
    let buf = Buffer.concat(parts);
    if (buf.length > MAX_LINE_BYTES) buf = buf.subarray(0, MAX_LINE_BYTES);
    else if (buf.length > 0 && buf[buf.length - 1] === 13) buf = buf.subarray(0, -1);
    return { lineNo: ++lineNo, line: buf.toString('utf8'), cut };
  };
  for await (const chunk of input as AsyncIterable<Buffer | string>) {
    const data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    let start = 0;
    for (let nl = data.indexOf(10, start); nl !== -1; nl = data.indexOf(10, start)) {
      if (skipping) skipping = false; // the end of a line already handed over in part
      else {
        held.push(data.subarray(start, nl));
        yield finish(held, heldBytes + nl - start > MAX_LINE_BYTES);
      }
      held = [];
      heldBytes = 0;
      start = nl + 1;
    }
    if (skipping || start >= data.length) continue;
    held.push(data.subarray(start));
    heldBytes += data.length - start;
    if (heldBytes > MAX_LINE_BYTES) {
      // Hand the head over now and skip to the next LF, so one endless line cannot fill memory.
      yield finish(held, true);
      held = [];
      heldBytes = 0;
      skipping = true;
    }
  }
  if (!skipping && heldBytes > 0) yield finish(held, false);
}

function count(t: Totals, r: ParseResult): void {
  if (r.kind === 'login') t.grants++;
  else if (r.kind === 'logout') t.logouts++;
  else {
    t.nothing++;
    t.byReason.set(r.reason, (t.byReason.get(r.reason) ?? 0) + 1);
  }
  if (r.pattern !== undefined && (r.kind !== 'none' || r.reason === 'pending')) t.byPattern.set(r.pattern, (t.byPattern.get(r.pattern) ?? 0) + 1);
}

/** A value as the operator should see it: bare when plain, else JSON-quoted with every control escaped. */
function show(v: string): string {
  if (/^[\x21-\x7e]+$/.test(v) && !v.includes('"')) return v;
  // eslint-disable-next-line no-control-regex
  return JSON.stringify(v).replace(/[\x7f-\x9f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function textLine(lineNo: number, r: ParseResult, cut: boolean): string {
  const tail = cut ? ` (line cut at ${MAX_LINE_BYTES} bytes)` : '';
  switch (r.kind) {
    case 'login': {
      let s = `L${lineNo}: grant ip=${r.ip} user=${r.user === undefined ? '-' : show(r.user)} service=${r.service ?? '-'}`;
      if (r.session !== undefined) s += ` session=${show(r.session)}`;
      if (r.userDropped !== undefined) s += ` user_dropped=${show(r.userDropped)}`;
      return `${s} [${r.pattern}]${tail}`;
    }
    case 'logout': {
      let s = `L${lineNo}: logout`;
      if (r.session !== undefined) s += ` session=${show(r.session)}`;
      if (r.ip !== undefined) s += ` ip=${r.ip}`;
      if (r.user !== undefined) s += ` user=${show(r.user)}`;
      return `${s} [${r.pattern}]${tail}`;
    }
    case 'none': {
      const detail = r.detail === undefined ? '' : `: ${show(r.detail)}`;
      return `L${lineNo}: none (${r.reason}${detail})${r.pattern === undefined ? '' : ` [${r.pattern}]`}${tail}`;
    }
  }
}

function jsonLine(lineNo: number, r: ParseResult, cut: boolean): Record<string, unknown> {
  const base: Record<string, unknown> = { line: lineNo, ...r };
  delete base.time; // the line's own time is not what an operator checks here; keep the output stable
  if (cut) base.cut = true;
  return base;
}

function summaryJson(t: Totals): Record<string, unknown> {
  return {
    lines: t.lines,
    grants: t.grants,
    logouts: t.logouts,
    nothing: t.nothing,
    cut: t.cut,
    byPattern: Object.fromEntries(t.byPattern),
    byReason: Object.fromEntries(t.byReason),
  };
}

function summaryText(t: Totals): string {
  const rows = (m: Map<string, number>): string => {
    const width = Math.max(0, ...[...m.keys()].map((k) => k.length));
    return [...m.entries()]
      .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
      .map(([k, n]) => `  ${k.padEnd(width)}  ${n}\n`)
      .join('');
  };
  let s = `\nlines: ${t.lines}  grants: ${t.grants}  logouts: ${t.logouts}  nothing: ${t.nothing}${t.cut > 0 ? `  cut: ${t.cut}` : ''}\n`;
  s += `by pattern:\n${t.byPattern.size > 0 ? rows(t.byPattern) : '  (no line matched a pattern)\n'}`;
  if (t.byReason.size > 0) s += `by reason (nothing):\n${rows(t.byReason)}`;
  return s;
}

async function out(s: string): Promise<void> {
  if (!process.stdout.write(s)) await once(process.stdout, 'drain');
}
