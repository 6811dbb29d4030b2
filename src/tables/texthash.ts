// `texthash:/path`: a Postfix access(5)/postmap(1) source file read into memory at open, as Postfix's own
// texthash type does: `key value` lines, `#` comments, continuation lines, keys folded to lower case.
// When a key repeats, the FIRST entry is used and a warning is returned, which is what Postfix does
// (dict_thash with DICT_FLAG_DUP_WARN), so the same file means the same thing to postmap and to relaygate.
// Security: unlike Postfix (which warns and skips), a line without a value refuses the table with its
// file:line: an access table silently missing a REJECT line is worse than a daemon that will not start.

import { RelaygateError } from '../errors.ts';
import type { LookupTable, TableType } from './types.ts';
import { keyValue, logicalLines, readTableFile } from './text-file.ts';

export async function loadTexthash(path: string): Promise<{ entries: Map<string, string>; warnings: string[] }> {
  const spec = `texthash:${path}`;
  const text = await readTableFile(spec, path);
  const fail = (line: number, why: string): never => {
    throw new RelaygateError('RG_ERR_TABLE_OPEN', `${path}:${line}: ${why}`);
  };
  const entries = new Map<string, string>();
  const warnings: string[] = [];
  for (const { line, text: logical } of logicalLines(text, fail)) {
    const { key, value } = keyValue(logical);
    if (value === '') fail(line, `expected "key value" (key, whitespace, value); got ${JSON.stringify(logical)}`);
    const folded = key.toLowerCase();
    if (key.endsWith(':')) warnings.push(`${path}:${line}: record is in "key: value" format; is this an alias file?`);
    if (entries.has(folded)) {
      warnings.push(`${path}:${line}: duplicate entry ${JSON.stringify(folded)}: the first one is used (as in Postfix)`);
      continue;
    }
    entries.set(folded, value);
  }
  return { entries, warnings };
}

export const texthashTable: TableType = {
  name: 'texthash',
  form: 'texthash:/path/file',
  description: 'Postfix access(5) text: `key value` lines, `#` comments, continuation lines; read at start-up',
  async open(name: string): Promise<LookupTable> {
    const { entries, warnings } = await loadTexthash(name);
    return {
      spec: `texthash:${name}`,
      type: 'texthash',
      partialKeys: true,
      warnings,
      async get(key: string) {
        return entries.get(key.toLowerCase());
      },
      async close() {},
    };
  },
};
