// Perdition POP3/IMAP proxy: the `Auth:` line written once the back-end server accepted the login.
//
// Shapes (no Debian package in the current release; read from the sources found with the code search):
//   Auth: 192.0.2.7->198.51.100.5 user="alice" server="mail1.example.net" port="110" status="ok"
//       the older form, as pop-before-smtp-conf.pl's "Perdition pattern" matches it
//   Auth: 192.0.2.7->198.51.100.5 user="alice" passwd="XXXXXX" server="mail1.example.net" port="110" status="ok"
//       perdition 1.x with the log_passwd option (horms/perdition perdition/perdition.c, perdition_log_auth():
//       `"Auth:%s user=\"%s\" passwd=\"%s\" server=\"%s\" port=\"%s\" status=\"%s\""`, XXXXXX unless logging)
//   Auth: 192.0.2.8:50234->198.51.100.5:143 client-secure=starttls authorisation_id=NONE authentication_id="alice"
//         server="mail1.example.net:143" protocol=IMAP4 server-secure=plaintext status="ok"
//       perdition 2.x (same function, `"Auth:%s client-secure=%s authorisation_id=%s%s%s authentication_id=\"%s\"%s%s%s
//       server=\"%s:%s\" protocol=%s server-secure=%s status=\"%s\""`, passwd="..." only in debug mode)
// The `from->to` part is `addr->addr` (1.x) or `addr:port->addr:port` (2.x; getnameinfo numeric, IPv6 without
// brackets). Failures carry `status="failed: <reason>"`.
//
// Security: the client address is the FIRST field, written before any client text, so the patterns anchor at
// `Auth: ` and take it there. The username (and a logged password) are unescaped; `status="ok"` must end the line,
// so a failure whose username contains `status="ok"` still ends with perdition's own `status="failed: ..."`.
// The user group cannot run over ` passwd="`, so a logged password never becomes part of the recorded user.

import type { LogFormat } from './types.ts';

const IP = '[0-9a-fA-F:.]+';
// Everything up to perdition's own closing quote before ` passwd="` or ` server="`: the user may not span a
// ` passwd="` field, so a password logged after it never lands in the user.
const USER = String.raw`(?<user>(?:(?!" passwd=").)*)"(?: passwd=".*")?`;

export const perdition: LogFormat = {
  name: 'perdition',
  description: 'Perdition POP3/IMAP proxy: `Auth: IP->IP user="..." ... status="ok"` (1.x) and `Auth: IP:port->IP:port ... authentication_id="..." ... status="ok"` (2.x)',
  idents: ['perdition', 'perdition.pop3', 'perdition.pop3s', 'perdition.imap4', 'perdition.imap4s', 'perdition.imaps', 'perdition.managesieve'],
  samples: 'shape from horms/perdition perdition.c (perdition_log_auth, 1.x and 2.x) and pop-before-smtp-conf.pl; no Debian package: lines written to that shape',
  patterns: [
    {
      name: 'perdition-auth',
      kind: 'login',
      needle: 'status="ok"',
      re: new RegExp(String.raw`^Auth: (?<ip>${IP})->${IP} user="${USER} server="[^"]{0,300}" port="[^"]{0,32}" status="ok"$`, 's'),
    },
    {
      name: 'perdition-auth-2',
      kind: 'login',
      needle: 'status="ok"',
      re: new RegExp(
        String.raw`^Auth: (?<ip>${IP}):\d{1,5}->${IP}:\d{1,5} client-secure=(?:plaintext|ssl|starttls) authorisation_id=(?:NONE|"[^"]{0,300}") authentication_id="${USER} server="[^"]{0,300}" protocol=(?<service>POP3|IMAP|MANAGESIEVE)[A-Z0-9]{0,4} server-secure=(?:plaintext|ssl|starttls) status="ok"$`,
        's',
      ),
    },
  ],
};
