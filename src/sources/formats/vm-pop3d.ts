// vm-pop3d (virtual-mail POP3 server): the one-line login of current versions, and the older two-line form.
//
// Shapes (pop-before-smtp-conf.pl: "A Modern vm-pop3d can use a normal, 1-line pattern" and "Older vm-pop3d --
// needs to match 2 log entries"; the shared reference log-formats.md; no Debian package to capture from):
//   User 'alice' logged in from 192.0.2.7                   one line
//   Connect from 192.0.2.7        ...   User 'alice' logged in        two lines of one pid
//
// Security: the username is printed unescaped. The one-line pattern ends at the address, the greedy `user`
// group makes the last `' logged in from IP` the captured one. In the two-line form the IP comes only from the
// `Connect from` line of the same ident[pid] (a username cannot write that line: it starts the message), and
// the `auth` pattern ends at `' logged in` so a one-line login is never mistaken for the second half.

import type { LogFormat } from './types.ts';

const IP = '[0-9a-fA-F:.]+';

export const vmPop3d: LogFormat = {
  name: 'vm-pop3d',
  description: "vm-pop3d: `User '...' logged in from IP`, or `Connect from IP` then `User '...' logged in` of the same pid",
  idents: ['vm-pop3d'],
  samples: 'shape from pop-before-smtp-conf.pl and the shared reference; no Debian package: lines written to that shape',
  patterns: [
    {
      name: 'vm-pop3d-login',
      kind: 'login',
      needle: "' logged in from ",
      re: new RegExp(String.raw`^User '(?<user>.*)' logged in from (?<ip>${IP})$`, 's'),
      service: 'pop3',
    },
    {
      name: 'vm-pop3d-connect',
      kind: 'connect',
      needle: 'Connect from ',
      re: new RegExp(String.raw`^Connect from (?<ip>${IP})$`),
    },
    {
      name: 'vm-pop3d-auth',
      kind: 'auth',
      needle: "' logged in",
      re: new RegExp(String.raw`^User '(?<user>.*)' logged in$`, 's'),
      service: 'pop3',
    },
  ],
};
