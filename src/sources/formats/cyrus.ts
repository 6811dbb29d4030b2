// Cyrus IMAP (imapd, pop3d under cyrus master): the `login:` line written once the password is verified.
//
// Shapes (real captures: Cyrus IMAP 3.6.1, test/fixtures/logs/raw/cyrus/*.log; imapd.c's
// `syslog(LOG_NOTICE, "login: %s %s%s %s%s %s", clienthost, userid, magicplus, mech, "+TLS", reply)`):
//   login: [127.0.0.7] rgalice plaintext User logged in SESSIONID=<cyrus-1795290123-24586-2-17058307566711220985>
//   login: mail.example.net [192.0.2.7] alice PLAIN+TLS User logged in SESSIONID=<...>     (reverselookup: yes)
//   login: host [192.0.2.7] alice plaintext User logged in                                  (Cyrus 2.x)
// clienthost is `[addr]`, or `name [addr]` with reverse lookups. Not success: `badlogin: [ip] mech (user) [reason]`.
// A POP3 `login:` can be followed by `Unable to open maildrop` (captured): the password was verified, so it
// counts as a login, as the capture notes record.
//
// Security: here the address comes BEFORE the username, so the pattern anchors at `login: ` and takes the FIRST
// bracket, after an optional host name that cannot contain a blank or a bracket; a username such as
// `x [6.6.6.6] alice` or `login: mx [6.6.6.6] alice` (captured, both logged in) never reaches the IP group. The
// greedy `user` group then runs up to the server's own ` mech User logged in[ SESSIONID=<...>]` tail at the end.

import type { LogFormat } from './types.ts';

const IP = '[0-9a-fA-F:.]+';

export const cyrus: LogFormat = {
  name: 'cyrus',
  description: 'Cyrus IMAP imapd/pop3d: `login: [host ][IP] user mech User logged in` lines (never `badlogin:`)',
  idents: ['cyrus/imap', 'cyrus/pop3', 'cyrus/imaps', 'cyrus/pop3s', 'imapd', 'pop3d', 'imaps', 'pop3s'],
  samples: 'real Cyrus IMAP 3.6.1 (Debian 12) imapd and pop3d through rsyslog, traditional and RFC 3339, with hostile usernames',
  patterns: [
    {
      name: 'cyrus-login',
      kind: 'login',
      needle: 'User logged in',
      re: new RegExp(
        String.raw`^login: (?:[A-Za-z0-9._-]{1,255} )?\[(?<ip>${IP})\] (?<user>.*) [A-Za-z0-9_+-]{1,40} User logged in(?: SESSIONID=<[A-Za-z0-9._-]{1,128}>)?$`,
        's',
      ),
    },
  ],
};
