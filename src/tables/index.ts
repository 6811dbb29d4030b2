// tables/: the face of the `type:name` lookup tables (inline, texthash, cidr).
// Security: tables know nothing about SMTP; they answer lookups, and a failed lookup throws (never "not found").
export type { LookupTable, TableType } from './types.ts';
export { TABLE_TYPES, openTable, parseTableSpec } from './registry.ts';
