// The Postfix table types relaygate can export to, one registry row each, and the `[export] table` parser.
//
// `table = "lmdb:/var/lib/relaygate/pbs"` names the table the way main.cf does (`type:name`); a bare path
// means lmdb:. postmap writes NAME + the type's suffix (NAME.lmdb, NAME.db, NAME.cdb), so every file
// operation here (temporary build, rename into place) works on that suffixed name.
//
// Whether a type can be updated in place decides how changes reach it: lmdb, hash and btree take
// `postmap -i` (adds) and `postmap -d -` (deletes); cdb cannot be opened for update at all (Postfix 3.7:
// "dict_cdb_open: inappropriate open flags for cdb database"), so each batch rebuilds the whole cdb file
// from the exporter's view of the grants and renames it into place, which is cheap for the table sizes
// POP-before-SMTP produces (one key per recently seen client).
//
// Security: the table name is operator configuration; it must be absolute so a changed working directory can
// never make relaygate write a table Postfix does not read.

import { basename, dirname, isAbsolute } from 'node:path';

export interface TableType {
  /** the Postfix type name, as in `postconf -m` */
  readonly type: string;
  /** what postmap appends to NAME for the file it writes */
  readonly suffix: string;
  /** true: `postmap -i` / `postmap -d -` update the file in place; false: rebuild and rename per batch */
  readonly incremental: boolean;
  /** the Debian package that adds the type to Postfix, for error messages */
  readonly debianPackage: string;
}

export const TABLE_TYPES: Readonly<Record<string, TableType>> = {
  lmdb: { type: 'lmdb', suffix: '.lmdb', incremental: true, debianPackage: 'postfix-lmdb' },
  hash: { type: 'hash', suffix: '.db', incremental: true, debianPackage: 'postfix' },
  btree: { type: 'btree', suffix: '.db', incremental: true, debianPackage: 'postfix' },
  cdb: { type: 'cdb', suffix: '.cdb', incremental: false, debianPackage: 'postfix-cdb' },
};

export const DEFAULT_TABLE_TYPE = 'lmdb';

export interface TableSpec {
  readonly type: TableType;
  /** absolute NAME, without the suffix: what goes after `type:` in main.cf and on postmap's command line */
  readonly name: string;
  /** NAME + suffix: the file Postfix opens */
  readonly file: string;
  readonly dir: string;
  readonly base: string;
  /** `type:NAME`, as an operator writes it in main.cf */
  readonly text: string;
}

/** Parses `[export] table`; returns the spec or a problem text naming the fix. */
export function parseTableSpec(value: string): TableSpec | string {
  const m = /^([a-z0-9_]+):(.*)$/.exec(value);
  const typeName = m ? m[1]! : DEFAULT_TABLE_TYPE;
  const name = m ? m[2]! : value;
  const type = Object.hasOwn(TABLE_TYPES, typeName) ? TABLE_TYPES[typeName] : undefined;
  if (type === undefined) {
    return `${JSON.stringify(value)}: table type ${JSON.stringify(typeName)} cannot be exported with postmap; use one of ${Object.keys(TABLE_TYPES).join(', ')} (e.g. "lmdb:/var/lib/relaygate/pbs")`;
  }
  if (name === '' || !isAbsolute(name)) return `${JSON.stringify(value)}: the table name must be an absolute path, e.g. "${type.type}:/var/lib/relaygate/pbs"`;
  if (/[\s\x00-\x1f\x7f,]/.test(name)) return `${JSON.stringify(value)}: the table path must not contain whitespace, commas or control characters (main.cf could not name it)`;
  if (name.endsWith('/')) return `${JSON.stringify(value)}: the table name is a directory; add a file name, e.g. "${type.type}:${name}pbs"`;
  if (name.endsWith(type.suffix)) {
    return `${JSON.stringify(value)}: give the table name without ${type.suffix} (postmap adds it), e.g. "${type.type}:${name.slice(0, -type.suffix.length)}"`;
  }
  return { type, name, file: name + type.suffix, dir: dirname(name), base: basename(name), text: `${type.type}:${name}` };
}
