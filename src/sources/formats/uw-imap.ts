// UW IMAP toolkit servers (ipop3d, imapd; their SSL builds ipop3sd, imapsd): successful logins.
//
// Shapes (UW imap-2007 source, ipop3d.c/imapd.c syslog calls, as quoted in the code search; and
// pop-before-smtp-conf.pl's default UW pattern; no Debian package in the current release to capture from):
//   Login user=alice host=dsl-10.example.net [192.0.2.7] nmsgs=3/3          ipop3d USER/PASS
//   Login user=alice host=[192.0.2.7] no mailbox                            ipop3d, INBOX could not be opened
//   Admin Login user=alice host=[192.0.2.7] nmsgs=0/0                       ipop3d, user*admin form
//   Login user=alice host=dsl-10.example.net [192.0.2.7]                    imapd LOGIN
//   Authenticated user=alice host=[192.0.2.7]                               imapd AUTHENTICATE
//   Auth user=alice host=[192.0.2.7] nmsgs=1/1                              ipop3d AUTH
//   APOP user=alice host=[192.0.2.7] nmsgs=1/1                              ipop3d APOP
// `host=` is c-client's tcp_clienthost(): `name [addr]` or `[addr]`. Not success: `Login failed user=...`,
// `Login failure user=...`, `AUTHENTICATE ... failure host=...`, `Logout user=...`.
//
// Security: the username is printed unescaped (truncated to 80 characters). Anchored at the verb at the start of
// the message (so `Login failed user=...` cannot match) and at the end of the line; the greedy `user` group
// followed by the server's ` host=[name ][IP]` tail makes the last bracket the captured one. The host name is
// limited to DNS characters, so a name cannot carry a bracket either.

import type { LogFormat } from './types.ts';

const IP = '[0-9a-fA-F:.]+';
const HOST = String.raw`host=(?:[A-Za-z0-9._-]{1,255} )?\[(?<ip>${IP})\]`;

export const uwImap: LogFormat = {
  name: 'uw-imap',
  description: 'UW IMAP toolkit ipop3d/imapd: `Login`, `Admin Login`, `Authenticated`, `Auth`, `APOP user=... host=[IP]` lines',
  idents: ['ipop3d', 'imapd', 'ipop3sd', 'imapsd'],
  samples: 'shape from the UW imap-2007 source and pop-before-smtp-conf.pl; no Debian package: lines written to that shape',
  patterns: [
    {
      name: 'uw-login',
      kind: 'login',
      needle: 'Login user=',
      re: new RegExp(String.raw`^(?:Admin )?Login user=(?<user>.*) ${HOST}(?: nmsgs=\d{1,10}/\d{1,10}| no mailbox)?$`, 's'),
    },
    {
      name: 'uw-auth',
      kind: 'login',
      needle: ' user=',
      re: new RegExp(String.raw`^(?:Authenticated|Auth|APOP) user=(?<user>.*) ${HOST}(?: nmsgs=\d{1,10}/\d{1,10})?$`, 's'),
    },
  ],
};
