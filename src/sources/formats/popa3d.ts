// popa3d (Openwall): two lines of one process — `Session from IP`, then `Authentication passed for USER`.
//
// Shapes (real captures: popa3d 1.0.3, Debian 12, standalone with PAM, test/fixtures/logs/raw/popa3d/*.log;
// pop-before-smtp-conf.pl's popa3d entry joins the same two lines by pid):
//   Session from 127.0.0.7
//   Authentication passed for rgpopalice
// Not success: `Authentication failed for USER` / `for UNKNOWN USER`, `Didn't attempt authentication`, and the
// pam_unix lines that share the ident (`pam_unix(popa3d:auth): authentication failure; ... user=...`).
//
// Security: the IP is only ever taken from a `Session from` line, which popa3d writes right after accept() and
// before reading anything from the client; the `auth` line pairs with the pending IP of the same ident[pid]
// only (the parser's pending table; a new `Session from` of a reused pid replaces the old entry, an `auth`
// line without its `connect` line yields nothing). popa3d refuses usernames with blanks before PASS, so a
// `Session from 6.6.6.6` username never gets logged at all (captured).

import type { LogFormat } from './types.ts';

const IP = '[0-9a-fA-F:.]+';

export const popa3d: LogFormat = {
  name: 'popa3d',
  description: 'popa3d: `Session from IP` then `Authentication passed for USER` of the same pid',
  idents: ['popa3d'],
  samples: 'real popa3d 1.0.3 (Debian 12) through rsyslog, traditional and RFC 3339, with hostile usernames',
  patterns: [
    {
      name: 'popa3d-session',
      kind: 'connect',
      needle: 'Session from ',
      re: new RegExp(String.raw`^Session from (?<ip>${IP})$`),
    },
    {
      name: 'popa3d-auth',
      kind: 'auth',
      needle: 'Authentication passed for ',
      re: /^Authentication passed for (?<user>.*)$/s,
      service: 'pop3',
    },
  ],
};
