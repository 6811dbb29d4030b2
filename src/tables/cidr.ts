// `cidr:/path`: a Postfix cidr_table(5) file: `network/len  value` lines (or a bare address for one
// host), `#` comments, continuation lines; the FIRST matching rule wins. Networks use src/net parseCidr(),
// so `[2001:db8::]/32` and `::ffff:10.0.0.0/104` (≡ 10.0.0.0/8) work as in mynetworks.
// Keys must be IP addresses: anything else (a hostname, `unknown`) is simply not found, and no partial
// keys are tried (Postfix does not try them on pattern tables).
// Security: a rule with host bits set or a bad network refuses the table with file:line (Postfix only
// warns and skips the rule, which can silently drop a REJECT). if/endif blocks are not supported and are
// refused rather than ignored.

import { RelaygateError } from '../errors.ts';
import { cidrContains, normalizeIp, parseCidr, type Cidr } from '../net/index.ts';
import type { LookupTable, TableType } from './types.ts';
import { keyValue, logicalLines, readTableFile } from './text-file.ts';

interface Rule {
  readonly block: Cidr;
  readonly value: string;
}

export async function loadCidr(path: string): Promise<Rule[]> {
  const text = await readTableFile(`cidr:${path}`, path);
  const fail = (line: number, why: string): never => {
    throw new RelaygateError('RG_ERR_TABLE_OPEN', `${path}:${line}: ${why}`);
  };
  const rules: Rule[] = [];
  for (const { line, text: logical } of logicalLines(text, fail)) {
    const { key, value } = keyValue(logical);
    const lower = key.toLowerCase();
    if (lower === 'if' || lower === 'endif' || key.startsWith('!')) fail(line, `"${key}" (if/endif, negation) is not supported by relaygate's cidr tables`);
    if (value === '') fail(line, `expected "network/len value"; got ${JSON.stringify(logical)}`);
    let block: Cidr;
    try {
      block = parseCidr(key);
    } catch (err) {
      return fail(line, (err as Error).message);
    }
    rules.push({ block, value });
  }
  return rules;
}

export const cidrTable: TableType = {
  name: 'cidr',
  form: 'cidr:/path/file',
  description: 'cidr_table(5): `network/len value` lines, first match wins',
  async open(name: string): Promise<LookupTable> {
    const rules = await loadCidr(name);
    return {
      spec: `cidr:${name}`,
      type: 'cidr',
      partialKeys: false,
      warnings: [],
      async get(key: string) {
        const ip = normalizeIp(key);
        if (ip === undefined) return undefined;
        for (const r of rules) if (cidrContains(r.block, ip)) return r.value;
        return undefined;
      },
      async close() {},
    };
  },
};
