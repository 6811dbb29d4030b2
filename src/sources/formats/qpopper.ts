// Qualcomm qpopper (in.qpopper, qpopper, popper): the login line and the end-of-session Stats line.
//
// Shapes (pop-before-smtp-conf.pl's qpopper entries — "a fairly modern Qpopper pattern" and the Stats pattern
// matching in.qpopper, qpopper and popper; the shared reference log-formats.md; no Debian package to capture):
//   (v4.0.5) POP login by user "alice" at (dsl.example.net) 192.0.2.7
//   Stats: alice 2 4096 0 0 dsl.example.net 192.0.2.7
// The Stats line (user, messages and bytes deleted, messages and bytes left, client host, client address) is
// written when a logged-in session ends. Not success: `-ERR [AUTH] Password supplied for "alice" is incorrect.`
//
// Security: the username is printed unescaped. Both patterns anchor at text qpopper writes first and end at the
// address, which is the last field; the greedy `user` group makes the last `at (host) IP` / `host IP` tail the
// captured one. The host is limited to name and address characters (a resolver-supplied name cannot carry
// parentheses or blanks).

import type { LogFormat } from './types.ts';

const IP = '[0-9a-fA-F:.]+';

export const qpopper: LogFormat = {
  name: 'qpopper',
  description: 'Qualcomm qpopper: `POP login by user "..." at (host) IP` and the session-end `Stats:` line',
  idents: ['in.qpopper', 'qpopper', 'popper'],
  samples: 'shape from pop-before-smtp-conf.pl and the shared reference; no Debian package: lines written to that shape',
  patterns: [
    {
      name: 'qpopper-login',
      kind: 'login',
      needle: 'POP login by user "',
      re: new RegExp(String.raw`^\(v[0-9A-Za-z._-]{1,32}\) POP login by user "(?<user>.*)" at \([A-Za-z0-9._:-]{0,255}\) (?<ip>${IP})$`, 's'),
      service: 'pop3',
    },
    {
      name: 'qpopper-stats',
      kind: 'login',
      needle: 'Stats: ',
      re: new RegExp(String.raw`^Stats: (?<user>.*) \d{1,10} \d{1,20} \d{1,10} \d{1,20} (?:[A-Za-z0-9._:-]{1,255} )?(?<ip>${IP})$`, 's'),
      service: 'pop3',
    },
  ],
};
