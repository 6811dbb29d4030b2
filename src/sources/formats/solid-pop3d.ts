// Solid POP3 (spop3d): `user X authenticated - IP` when built with --enable-logextend, else two lines of one
// pid (`connect from IP`, then `user X authenticated`).
//
// Shapes (pop-before-smtp-conf.pl's two solidpop3d entries, with and without --enable-logextend; the shared
// reference log-formats.md; no Debian package in the current release to capture from):
//   user alice authenticated - 192.0.2.7
//   connect from 192.0.2.7     ...     user alice authenticated
//
// Security: the username is printed unescaped. The one-line pattern ends at the address and its greedy `user`
// group makes the last ` authenticated - IP` the captured one; the two-line form takes the IP only from the
// `connect from` line of the same ident[pid], and its `auth` pattern ends at `authenticated`, so a one-line
// login is never taken for a second half.

import type { LogFormat } from './types.ts';

const IP = '[0-9a-fA-F:.]+';

export const solidPop3d: LogFormat = {
  name: 'solid-pop3d',
  description: 'Solid POP3 (spop3d): `user ... authenticated - IP` (--enable-logextend), or `connect from IP` then `user ... authenticated` of the same pid',
  idents: ['spop3d', 'solid-pop3d'],
  samples: 'shape from pop-before-smtp-conf.pl and the shared reference; no Debian package: lines written to that shape',
  patterns: [
    {
      name: 'solid-pop3d-login',
      kind: 'login',
      needle: ' authenticated - ',
      re: new RegExp(String.raw`^user (?<user>.*) authenticated - (?<ip>${IP})$`, 's'),
      service: 'pop3',
    },
    {
      name: 'solid-pop3d-connect',
      kind: 'connect',
      needle: 'connect from ',
      re: new RegExp(String.raw`^connect from (?<ip>${IP})$`),
    },
    {
      name: 'solid-pop3d-auth',
      kind: 'auth',
      needle: ' authenticated',
      re: /^user (?<user>.*) authenticated$/s,
      service: 'pop3',
    },
  ],
};
