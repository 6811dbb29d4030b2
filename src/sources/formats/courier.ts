// Courier POP3 / Courier-IMAP (couriertcpd children pop3d, imapd, pop3d-ssl, imapd-ssl; the older
// courierpop3login and imaplogin): successful `LOGIN,` lines, and session ends for track_logout.
//
// Shapes (real captures: Courier POP3 1.0.16 / Courier-IMAP 5.0.13, test/fixtures/logs/raw/courier/*.log;
// the 2000-era line and TIMEOUT/DISCONNECTED from pop-before-smtp-conf.pl's Courier entry):
//   LOGIN, user=alice, ip=[::ffff:127.0.0.7], port=[39911]
//   LOGIN, user=alice, ip=[::ffff:127.0.0.7], port=[34043], protocol=IMAP
//   LOGIN, user=alice, ip=[192.0.2.7]                                          (Courier-IMAP of 2000, ident imaplogin)
//   LOGOUT, user=alice, ip=[::ffff:127.0.0.7], port=[39911], top=0, retr=0, rcvd=6, sent=30, time=0
//   TIMEOUT, user=alice, ip=[...], port=[...], headers=0, body=0, rcvd=..., sent=..., time=...   (not captured)
// Not success: `LOGIN FAILED, ...`, `Connection, ip=[...]`, `Disconnected, ...`, and `LOGOUT, ip=[...]`
// without a user (a session that never logged in).
//
// Security: Courier writes the username unescaped (captured, a SUCCESSFUL login:
// `LOGIN, user=x, ip=[6.6.6.6], port=[1], ip=[::ffff:127.0.2.1], port=[40771], protocol=IMAP`). The patterns
// anchor at `LOGIN, ` at the start of the message (so `LOGIN FAILED, user=LOGIN, user=alice, ip=[6.6.6.6]...`
// cannot match) and the greedy `user` group followed by the server's `, ip=[IP], port=[N]` tail up to the end
// of the line makes the last `ip=[...]` the captured one. The 2000-era pattern requires the line to END at
// `ip=[...]`: current lines always end with Courier's own `port=[N]` or `protocol=...`, so a username cannot
// turn a current line into an old one. IPv4 clients appear as ::ffff:a.b.c.d; normalizeIp strips that.

import type { LogFormat } from './types.ts';

const IP = '[0-9a-fA-F:.]+';

export const courier: LogFormat = {
  name: 'courier',
  description: 'Courier POP3 and Courier-IMAP: `LOGIN, user=..., ip=[...], port=[...]` lines; LOGOUT/TIMEOUT/DISCONNECTED for track_logout',
  idents: ['pop3d', 'imapd', 'pop3d-ssl', 'imapd-ssl', 'courierpop3login', 'imaplogin'],
  samples: 'real Courier POP3 1.0.16 / Courier-IMAP 5.0.13 (Debian 12) through rsyslog, traditional and RFC 3339, with hostile usernames; the 2000-era and TIMEOUT lines in their documented shape',
  patterns: [
    {
      name: 'courier-login',
      kind: 'login',
      needle: 'LOGIN, user=',
      re: new RegExp(String.raw`^LOGIN, user=(?<user>.*), ip=\[(?<ip>${IP})\], port=\[\d{1,5}\](?:, protocol=(?<service>IMAP|POP3))?$`, 's'),
    },
    {
      name: 'courier-login-old',
      kind: 'login',
      needle: 'LOGIN, user=',
      re: new RegExp(String.raw`^LOGIN, user=(?<user>.*), ip=\[(?<ip>${IP})\]$`, 's'),
    },
    {
      name: 'courier-logout',
      kind: 'logout',
      needle: ', user=',
      re: new RegExp(String.raw`^(?:LOGOUT|TIMEOUT|DISCONNECTED), user=(?<user>.*), ip=\[(?<ip>${IP})\], port=\[\d{1,5}\](?:, [a-z]{1,16}=\d{1,20})*$`, 's'),
    },
  ],
};
