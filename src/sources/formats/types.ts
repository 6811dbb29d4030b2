// What a log format is: data. A name, the syslog idents its daemon writes under, and anchored patterns
// with named groups, each saying what a match means. The registry (index.ts) has one row per format,
// each in its own file; test/sources/formats.test.ts walks the registry and demands for every row a
// sample file test/fixtures/logs/<name>.log whose annotated lines all behave, a sample for every pattern,
// hostile samples, and patterns that pass the lint (anchored, no catch-all before the IP).
//
// Security: patterns anchor right after the line prefix (^) and at the end of the line ($), and take the
// IP from the last server-written field: a greedy `user` group followed by the server's own tail makes the
// real address the one captured even when a username contains `rip=6.6.6.6` or `ip=[6.6.6.6]`.

/** What a matching line means. */
export type PatternKind =
  /** a successful login: record a grant for `ip` (groups: ip, user, optional service, session) */
  | 'login'
  /** the end of a session (logout tracking): groups: session, or ip (+ user) */
  | 'logout'
  /** first half of a two-line login (popa3d, old vm-pop3d): `ip` keyed by the process id */
  | 'connect'
  /** second half: the login succeeded for `user` in the process whose `connect` line gave the IP */
  | 'auth';

export interface LogPattern {
  /** stable name, shown by `relaygate test-log` and in metrics */
  readonly name: string;
  readonly kind: PatternKind;
  /** applied to the message after the prefix; must start with ^ and end with $ */
  readonly re: RegExp;
  /** service when the pattern implies one (the `service` group wins when present) */
  readonly service?: string;
  /**
   * a plain substring every matching message contains: lines without it skip the regex (speed:
   * most lines of a mail log are not logins)
   */
  readonly needle: string;
}

export interface LogFormat {
  readonly name: string;
  /** one line for README and `relaygate test-log --list` */
  readonly description: string;
  /** program names (syslog idents) the daemon writes under; `ident` in [[watch]] overrides */
  readonly idents: readonly string[];
  /** true when lines without an ident (Dovecot log_path) belong to this format */
  readonly identless?: boolean;
  readonly patterns: readonly LogPattern[];
  /** where the samples come from (real program and version, or the documented shape) */
  readonly samples: string;
}
