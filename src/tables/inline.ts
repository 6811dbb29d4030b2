// `inline:{ key=value, key2=value2 }`: a small table written in the configuration itself (Postfix 3.0
// dict_inline). Entries are separated by commas or whitespace; an entry whose value contains whitespace or
// commas is wrapped in its own braces: `inline:{ { 192.0.2.9 = REJECT go away, spammer } }`.
// Keys are case-insensitive (folded to lower case), like every Postfix table.
// Security: the text comes from the operator's configuration, so it is trusted for content but parsed
// strictly: unbalanced braces or an entry without `=` refuse the whole table instead of guessing.

import { RelaygateError } from '../errors.ts';
import type { LookupTable, TableType } from './types.ts';

const SEPARATORS = new Set([',', ' ', '\t', '\r', '\n']);

/** Splits `a=1, { b = x y }` into entries, keeping brace groups whole (Postfix mystrtokq with braces). */
function splitEntries(body: string, fail: (why: string) => never): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < body.length) {
    if (SEPARATORS.has(body[i]!)) {
      i++;
      continue;
    }
    const start = i;
    let depth = 0;
    while (i < body.length && (depth > 0 || !SEPARATORS.has(body[i]!))) {
      if (body[i] === '{') depth++;
      else if (body[i] === '}' && --depth < 0) fail(`unbalanced "}" at offset ${i}`);
      i++;
    }
    if (depth !== 0) fail('missing "}"');
    out.push(body.slice(start, i));
  }
  return out;
}

export function parseInline(name: string): { entries: Map<string, string>; warnings: string[] } {
  const spec = `inline:${name}`;
  const fail = (why: string): never => {
    throw new RelaygateError('RG_ERR_TABLE_OPEN', `${spec}: ${why}; expected inline:{ key=value, { key = text with spaces } }`);
  };
  const text = name.trim();
  if (!text.startsWith('{') || !text.endsWith('}')) fail('the table must be enclosed in { }');
  const entries = new Map<string, string>();
  const warnings: string[] = [];
  for (const raw of splitEntries(text.slice(1, -1), fail)) {
    let entry = raw;
    if (entry.startsWith('{')) {
      if (!entry.endsWith('}')) fail(`entry ${JSON.stringify(raw)} has text after its closing "}"`);
      entry = entry.slice(1, -1).trim();
    }
    const eq = entry.indexOf('=');
    if (eq === -1) fail(`entry ${JSON.stringify(raw)} is not key=value`);
    const key = entry.slice(0, eq).trim().toLowerCase();
    const value = entry.slice(eq + 1).trim();
    if (key === '' || value === '') fail(`entry ${JSON.stringify(raw)} has an empty ${key === '' ? 'key' : 'value'}`);
    if (entries.has(key)) {
      // Postfix tables keep the first entry for a key and warn (DICT_FLAG_DUP_WARN).
      warnings.push(`${spec}: duplicate entry ${JSON.stringify(key)}: the first one is used`);
      continue;
    }
    entries.set(key, value);
  }
  if (entries.size === 0) fail('the table has no entries');
  return { entries, warnings };
}

export const inlineTable: TableType = {
  name: 'inline',
  form: 'inline:{ key=value, key2=value2 }',
  description: 'as in Postfix',
  async open(name: string): Promise<LookupTable> {
    const { entries, warnings } = parseInline(name);
    return {
      spec: `inline:${name}`,
      type: 'inline',
      partialKeys: true,
      warnings,
      async get(key: string) {
        return entries.get(key.toLowerCase());
      },
      async close() {},
    };
  },
};
