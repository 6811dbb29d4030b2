// The Postfix source-text format shared by texthash: and cidr: files (postmap(1), readlline(3)).
//
// A logical line starts with non-whitespace text; a line that starts with whitespace continues it. Empty
// lines, whitespace-only lines and lines whose first non-whitespace character is `#` are ignored, also
// inside a continued line. `#` later in a line is data, as in Postfix.
// Security: the file is the operator's; reading is done once, at open, so a lookup never touches disk.

import { readFile } from 'node:fs/promises';
import { RelaygateError } from '../errors.ts';

export interface LogicalLine {
  /** 1-based number of the physical line the logical line starts on */
  readonly line: number;
  readonly text: string;
}

/** Reads a whole table file; a missing or unreadable file is RG_ERR_TABLE_OPEN naming the path and the fix. */
export async function readTableFile(spec: string, path: string): Promise<string> {
  if (path === '') throw new RelaygateError('RG_ERR_TABLE_OPEN', `${spec}: no file name; expected ${spec}/path/to/file`);
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    const why =
      code === 'ENOENT'
        ? 'no such file; create it (it may be empty) or correct the path'
        : code === 'EACCES'
          ? 'permission denied; make it readable by the relaygate user'
          : code === 'EISDIR'
            ? 'is a directory; name the table file'
            : `${(err as Error).message}`;
    throw new RelaygateError('RG_ERR_TABLE_OPEN', `${spec}: cannot read ${path}: ${code}: ${why}`, { cause: err });
  }
}

/** Splits file text into logical lines; `fail(line, why)` reports a continuation with nothing to continue. */
export function logicalLines(text: string, fail: (line: number, why: string) => never): LogicalLine[] {
  const out: Array<{ line: number; text: string }> = [];
  const physical = text.split(/\r?\n/);
  for (let i = 0; i < physical.length; i++) {
    const raw = physical[i]!;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    if (raw[0] === ' ' || raw[0] === '\t') {
      const last = out[out.length - 1];
      if (last === undefined) fail(i + 1, 'continuation line (starts with whitespace) with no line before it');
      last!.text += ` ${trimmed}`;
      continue;
    }
    out.push({ line: i + 1, text: trimmed });
  }
  return out;
}

/** Splits a logical line on its first whitespace into key and value (both trimmed; value may be ''). */
export function keyValue(text: string): { key: string; value: string } {
  const m = /^(\S+)\s*(.*)$/.exec(text);
  return { key: m?.[1] ?? '', value: (m?.[2] ?? '').trim() };
}
