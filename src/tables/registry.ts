// The registry of lookup-table types, one row per type (Postfix's dict_open table), and openTable().
// Adding a type is a new module plus one row here; test/tables walks the rows and checks README lists them.
// Security: a spec names a type and a path from the configuration; an unknown type is an error at start-up
// (RG_ERR_TABLE_TYPE), never a silently empty table.

import { RelaygateError } from '../errors.ts';
import { cidrTable } from './cidr.ts';
import { inlineTable } from './inline.ts';
import { texthashTable } from './texthash.ts';
import type { LookupTable, TableType } from './types.ts';

export const TABLE_TYPES: readonly TableType[] = [inlineTable, texthashTable, cidrTable];

const BY_NAME = new Map(TABLE_TYPES.map((t) => [t.name, t]));

/** Postfix's indexed types: relaygate reads the source text instead of the postmap output. */
const INDEXED = new Set(['hash', 'btree', 'lmdb', 'cdb', 'dbm', 'sdbm']);

/** Splits `type:name`; throws RG_ERR_TABLE_TYPE when it is not of that shape. */
export function parseTableSpec(spec: string): { type: string; name: string } {
  const m = /^([a-z][a-z0-9_-]*):(.+)$/is.exec(spec.trim());
  if (!m) {
    throw new RelaygateError(
      'RG_ERR_TABLE_TYPE',
      `invalid table ${JSON.stringify(spec)}: expected type:name, e.g. texthash:/etc/relaygate/access (types: ${TABLE_TYPES.map((t) => t.name).join(', ')})`,
    );
  }
  return { type: m[1]!.toLowerCase(), name: m[2]! };
}

/** Opens a `type:name` table: RG_ERR_TABLE_TYPE for a bad spec or unknown type, RG_ERR_TABLE_OPEN from the type. */
export async function openTable(spec: string): Promise<LookupTable> {
  const { type, name } = parseTableSpec(spec);
  const tableType = BY_NAME.get(type);
  if (tableType === undefined) {
    const hint = INDEXED.has(type) ? `; relaygate reads the source text: use texthash:${name}` : '';
    throw new RelaygateError(
      'RG_ERR_TABLE_TYPE',
      `unknown table type "${type}" in ${JSON.stringify(spec)}: supported types are ${TABLE_TYPES.map((t) => t.name).join(', ')}${hint}`,
    );
  }
  return tableType.open(name);
}
