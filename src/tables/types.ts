// The lookup-table interface: Postfix's `type:name` tables (dict(3)) as relaygate uses them.
//
// A table answers `get(key)` with a value or undefined. Restrictions (check_client_access, ...) and the
// sender-login checks read tables only through this interface, so adding a type is one module plus one
// registry row (registry.ts) and nothing else changes.
// Security: keys come from SMTP clients (hostnames, addresses) and are untrusted; a table must treat them
// as opaque strings. A lookup that cannot be answered must THROW (RG_ERR_TABLE_LOOKUP), never return
// undefined: "not found" may let a request through, a failure must defer it.

export interface LookupTable {
  /** the `type:name` text the table was opened with, for logs and traces */
  readonly spec: string;
  readonly type: string;
  /**
   * Postfix tries partial keys (IP prefixes `192.0.2`, parent domains, `user@`) only on indexed and file
   * tables (DICT_FLAG_FIXED), never on pattern tables such as cidr.
   */
  readonly partialKeys: boolean;
  /** problems found while opening that did not stop it (duplicate keys, ...), for the caller to log */
  readonly warnings?: readonly string[];
  /** The value for `key`, or undefined. Throws RelaygateError RG_ERR_TABLE_LOOKUP when it cannot answer. */
  get(key: string): Promise<string | undefined>;
  close(): Promise<void>;
}

export interface TableType {
  /** the `type` in `type:name` */
  readonly name: string;
  /** how a spec of this type is written, for README and error messages */
  readonly form: string;
  /** one line for README's table of types */
  readonly description: string;
  /** Opens `name` (the part after `type:`); throws RG_ERR_TABLE_OPEN naming the problem and the fix. */
  open(name: string): Promise<LookupTable>;
}
