// Stable error codes (RG_ERR_*), each with what it means and how to fix it.
//
// The catalog is the single source of truth: README's error table is checked against it by
// test/errors.test.ts, and codes are never reused or renumbered once released (Fastify's rule).
// Security: messages may be logged and shown to operators; never put a password or token into one.

export interface ErrorDoc {
  /** one line: what went wrong */
  readonly summary: string;
  /** one line: what the operator does about it */
  readonly fix: string;
  /** process exit status when this error ends a command (sysexits.h where one fits) */
  readonly exit: number;
}

export const ERROR_CATALOG = {
  RG_ERR_CONFIG_INVALID: {
    summary: 'The configuration file has errors (every problem is listed, with its key and line).',
    fix: 'Correct each listed key; run `relaygate config check -c FILE` until it prints "ok".',
    exit: 78,
  },
  RG_ERR_CONFIG_READ: {
    summary: 'The configuration file could not be read or is not valid TOML.',
    fix: 'Check the path given with -c, its permissions, and the TOML syntax at the line shown.',
    exit: 78,
  },
  RG_ERR_STORE_OPEN: {
    summary: 'The access map could not be opened (data directory missing, unwritable, or corrupt; Redis unreachable, refusing the password, or holding foreign keys).',
    fix: 'LMDB: check `data_dir` / `[store] path` exists and is writable by the relaygate user; if the files are corrupt, move them aside and restart (grants are re-learned from the next logins). Redis: start it, or correct `[store] url` (host, port, password) or `key_prefix` as the message says.',
    exit: 73,
  },
  RG_ERR_STORE_IO: {
    summary: 'A read or write of the access map failed at run time (or Redis did not answer within `[store] timeout`); decisions answer 4xx meanwhile.',
    fix: 'Look at the logged cause (disk full, permissions, map size; Redis down or unreadable record); free space or raise `[store] map_size`, bring Redis back (relaygate reconnects by itself), or `relaygate map del IP` an unreadable grant.',
    exit: 74,
  },
  RG_ERR_TABLE_TYPE: {
    summary: 'A lookup table names a type relaygate does not know (`type:name`).',
    fix: 'Use one of the supported types (inline, texthash, cidr); see README "Lookup tables".',
    exit: 78,
  },
  RG_ERR_TABLE_OPEN: {
    summary: 'A lookup table file is missing, unreadable or has a syntax error.',
    fix: 'Create the file or correct the line shown; relaygate reads it at start-up and on reload.',
    exit: 78,
  },
  RG_ERR_TABLE_LOOKUP: {
    summary: 'A lookup in a table failed at run time; the decision becomes `451 4.3.0 Temporary lookup failure`.',
    fix: 'See the logged cause; the client retries, so fix the table and no mail is lost.',
    exit: 75,
  },
  RG_ERR_RESTRICTION: {
    summary: 'A restriction list names an unknown restriction or gives it a bad argument.',
    fix: 'Use the Postfix names listed in README "Restrictions"; table arguments are `type:name`.',
    exit: 78,
  },
  RG_ERR_BAD_ADDRESS: {
    summary: 'An IP address or CIDR block is malformed (hostnames, `unknown`, zone ids are refused).',
    fix: 'Give a literal IPv4 or IPv6 address, or a network as `addr/len` (IPv6 may be written `[addr]/len`).',
    exit: 64,
  },
  RG_ERR_USAGE: {
    summary: 'A command was called with missing or invalid arguments.',
    fix: 'Run the command with --help to see its arguments.',
    exit: 64,
  },
  RG_ERR_AUTH_BACKEND: {
    summary: 'A SASL backend for SMTP AUTH is misconfigured (unknown backend, passwd-file missing or unreadable, bad socket path or host:port).',
    fix: 'Correct `[auth]` backend and path: passwd-file needs a readable file, dovecot an absolute unix socket path or host:port, saslauthd the absolute path of its mux socket.',
    exit: 78,
  },
  RG_ERR_POSTMAP: {
    summary: 'The Postfix table export is enabled but postmap is missing or not executable.',
    fix: 'Install Postfix (Debian: `apt-get install postfix`), or set `[export] postmap` to its postmap binary, or remove `[export] table`.',
    exit: 69,
  },
  RG_ERR_EXPORT_TABLE: {
    summary: 'The Postfix table of `[export] table` cannot be built at start-up (type not in `postconf -m`, directory not writable, or postmap failed).',
    fix: 'Read postmap\'s message in the error: install the type\'s package (postfix-lmdb, postfix-cdb), make the directory writable, or set `[export] config_directory` to the directory holding main.cf.',
    exit: 73,
  },
  RG_ERR_RPCBIND: {
    summary: 'The DRAC server could not register with the local portmapper (`[drac] rpcbind = true`).',
    fix: 'Start rpcbind (`systemctl start rpcbind`) or stop the program holding RPC program 900101 (`rpcinfo -p`, e.g. an old rpc.dracd); or set `[drac] rpcbind = "auto"` and give DRAC clients a fixed port.',
    exit: 69,
  },
  RG_ERR_INTERNAL: {
    summary: 'An unexpected internal error; the affected request is answered 4xx and the daemon goes on.',
    fix: 'Please report it with the logged stack trace.',
    exit: 70,
  },
} as const satisfies Record<string, ErrorDoc>;

export type ErrorCode = keyof typeof ERROR_CATALOG;

/** Every error relaygate raises on purpose carries a stable code from the catalog. */
export class RelaygateError extends Error {
  readonly code: ErrorCode;
  /** extra lines (e.g. each config problem) shown under the message */
  readonly details: readonly string[];

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: readonly string[] }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RelaygateError';
    this.code = code;
    this.details = options?.details ?? [];
  }

  get exitCode(): number {
    return ERROR_CATALOG[this.code].exit;
  }
}

export function isRelaygateError(e: unknown): e is RelaygateError {
  return e instanceof RelaygateError;
}
