// vpopmail's vchkpw (qmail-pop3d / IMAP checkpassword): successful logins, old and current wording.
//
// Shapes (ident = vpopmail's LOG_NAME, `vpopmail`; the message starts with vchkpw's own log name):
//   vchkpw: login [alice@example.com] from 192.0.2.7
//       old vchkpw, as pop-before-smtp-conf.pl's "qmail's pop3d" entry matches it
//   vchkpw-pop3: (PLAIN) login success alice@example.com:192.0.2.7
//   vchkpw-imap: (PLAIN) login success alice@example.com:192.0.2.7
//   vchkpw-pop3: system password login success alice:192.0.2.7
//       vpopmail 5.4+ vchkpw.c (`"%s: (%s) login success %s@%s:%s"`, `"%s: system password login success %s:%s"`),
//       logged when ENABLE_LOGGING is 1 or 4; the log name is vchkpw-pop3, -pop3s, -imap, -imaps by port
// Not covered on purpose: vchkpw-smtp/-smtps/-submission (SMTP AUTH already authenticates that connection),
// vchkpw-webmail (the address is the webmail host's), vchkpw-<port> (protocol unknown).
// Not success: `password fail`, `vpopmail user not found`, `... access denied`.
//
// Security: the login name is printed unescaped and the address follows it. Anchored at vchkpw's log name at
// the start of the message and at the end of the line. In the current form the user runs up to the LAST
// `@domain:` (a domain has no colon), so an IPv6 address after it stays whole; a system user has no colon at
// all (passwd(5)). A `password fail` line starts differently and never matches, even when the failed password
// is logged.

import type { LogFormat } from './types.ts';

const IP = '[0-9a-fA-F:.]+';
const SERVICE = '(?<service>pop3|imap)s?';

export const vpopmail: LogFormat = {
  name: 'vpopmail',
  description: 'vpopmail vchkpw: `vchkpw-pop3: (PLAIN) login success user@domain:IP` (and -imap), and the old `vchkpw: login [user] from IP`',
  idents: ['vpopmail'],
  samples: 'shape from vpopmail vchkpw.c (5.4+) and pop-before-smtp-conf.pl (old); no Debian package: lines written to that shape',
  patterns: [
    {
      name: 'vchkpw-login-old',
      kind: 'login',
      needle: 'vchkpw: login [',
      re: new RegExp(String.raw`^vchkpw: login \[(?<user>.*)\] from (?<ip>${IP})$`, 's'),
    },
    {
      name: 'vchkpw-login',
      kind: 'login',
      needle: ' login success ',
      re: new RegExp(String.raw`^vchkpw-${SERVICE}: \([A-Z0-9-]{1,16}\) login success (?<user>.*@[A-Za-z0-9.-]{1,255}):(?<ip>${IP})$`, 's'),
    },
    {
      name: 'vchkpw-login-system',
      kind: 'login',
      needle: 'system password login success ',
      re: new RegExp(String.raw`^vchkpw-${SERVICE}: system password login success (?<user>[^:]{1,255}):(?<ip>${IP})$`, 's'),
    },
  ],
};
