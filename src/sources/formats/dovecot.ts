// Dovecot 1.x–2.4: successful logins of the imap/pop3/submission/managesieve login processes, and the mail
// process's session end (for track_logout).
//
// Shapes (real captures: Dovecot 2.3.19.1, test/fixtures/logs/raw/dovecot/*.log; 2.4 and 1.x from the shared
// reference log-formats.md and pop-before-smtp-conf.pl's Dovecot entries):
//   pop3-login: Login: user=<alice>, method=PLAIN, rip=127.0.0.7, lip=127.0.0.1, mpid=17656, session=<ws3efs5gBaR/AAAH>
//   pop3-login: Info: Login: user=<bob>, method=PLAIN, rip=::1, lip=::1, mpid=17755, secured, session=<...>   (log_path)
//   imap-login: Logged in: user=<alice>, method=PLAIN, rip=..., lip=..., mpid=..., TLS, session=<...>         (2.4)
//   pop3-login: Login: user=<alice>, method=PLAIN, rip=::ffff:192.0.2.7, lip=::ffff:198.51.100.5           (1.x)
//   imap(alice)<17697><+GDpfs5guat/AAAH>: Disconnected: Logged out in=9 out=470 ...                        (session end)
// The elements are Dovecot's default login_log_format_elements
// (`user=<%u> method=%m rip=%r lip=%l mpid=%e %c session=<%{session}>`, `%c` = `secured` or `TLS`); 1.x has
// no mpid or session. A site with its own element list writes a custom `pattern` in [[watch]].
// Failures never start with `<svc>-login: Login:`: `Disconnected: ... (auth failed, N attempts ...)`,
// `Aborted login`, `Login aborted` (2.4), `Disconnected: Connection closed (no auth attempts ...)`.
//
// Security: Dovecot writes the username unescaped between `user=<` and `>` — in failures always, and with a
// permissive auth_username_chars in successful logins too (captured:
// `Login: user=<x, rip=6.6.6.6, lip=1.1.1.1>, method=PLAIN, rip=127.0.2.3, lip=127.0.0.1, ...`). The patterns
// anchor at the login process name at the start of the message, so a failure whose username holds a whole
// fake `Login:` line cannot match; the greedy `user` group followed by the server's own
// `>, method=M, rip=IP, lip=IP[, mpid=N][, TLS][, session=<S>]` tail up to the end of the line makes the last
// `rip=` — the one Dovecot wrote — the captured address. A CR/LF inside a username splits the mail process's
// log prefix over several lines (captured); the pieces start with `pop3: Error: ` or a torn `pop3(ev` and
// match nothing. The logout pattern takes the session id from the last `svc(user)<mpid><session>: ` prefix.

import type { LogFormat } from './types.ts';

const IP = '[0-9a-fA-F:.]+';
const SERVICE = '(?<service>imap|pop3|submission|managesieve)';
// Dovecot session ids are base64 (`ws3efs5gBaR/AAAH`, 32 characters for IPv6 clients).
const SESSION = '(?<session>[A-Za-z0-9+/]{1,64})';

export const dovecot: LogFormat = {
  name: 'dovecot',
  description: 'Dovecot 1.x–2.4 login processes (imap, pop3, submission, managesieve): `Login:` / `Logged in:` lines; session ends for track_logout',
  idents: ['dovecot'],
  identless: true,
  samples: 'real Dovecot 2.3.19.1 (Debian 12) through rsyslog (traditional and RFC 3339) and log_path, default and permissive username rules; 2.4 and 1.x lines in their documented shape',
  patterns: [
    {
      name: 'dovecot-login',
      kind: 'login',
      needle: 'user=<',
      // `s`: a raw CR inside a username (log_path keeps it) must not stop the match: the user is dropped
      // later by the parser's control-character rule, the grant stays.
      re: new RegExp(
        String.raw`^${SERVICE}-login: (?:Info: )?(?:Login|Logged in): user=<(?<user>.*)>, method=[A-Za-z0-9_-]{1,32}, rip=(?<ip>${IP}), lip=${IP}(?:, mpid=\d{1,10})?(?:, (?:secured|TLS))?(?:, session=<${SESSION}>)?$`,
        's',
      ),
    },
    {
      name: 'dovecot-logout',
      kind: 'logout',
      // Every way a mail process's session ends: `Disconnected: Logged out ...`, `Disconnected: Connection
      // closed ...`, `Disconnected for inactivity ...`, `Disconnected: Server shutting down`. Only sessions
      // this watcher saw log in are affected, so a forged end merely starts their grace early.
      needle: 'Disconnected',
      re: new RegExp(String.raw`^${SERVICE}\((?<user>.*)\)<\d{1,10}><${SESSION}>: (?:Info: )?Disconnected(?::| for inactivity)(?: .*)?$`, 's'),
    },
  ],
};
