// GNU pop3d (GNU mailutils' POP3 server): `User 'X' logged in with mailbox 'M' from IP`.
//
// Shape (pop-before-smtp-conf.pl's "GNU pop3d" entry and the shared reference log-formats.md):
//   User 'alice' logged in with mailbox '/var/mail/alice' from 192.0.2.7
// Not verified: the GNU pop3d/mailutils sources found with the code search log `User '%s' logged in with
// mailbox '%s'` (later `(N msgs)`, and mailutils' backquoted `user `%s' logged in with mailbox `%s'`) with NO
// address at all; only the `... from IP` wording that pop-before-smtp documents carries one. Lines without the
// address yield nothing: there is no IP in them to grant.
//
// Security: the username is printed unescaped, and the mailbox path usually contains it again. The pattern ends
// at the address: the greedy `user` group and a mailbox without quotes make the last `' from IP` the captured
// one. A mailbox path with a quote in it makes the line match nothing (no grant), never a wrong one.

import type { LogFormat } from './types.ts';

const IP = '[0-9a-fA-F:.]+';

export const gnuPop3d: LogFormat = {
  name: 'gnu-pop3d',
  description: "GNU pop3d: `User '...' logged in with mailbox '...' from IP`",
  idents: ['gnu-pop3d'],
  samples: 'shape from pop-before-smtp-conf.pl and the shared reference; lines written to that shape',
  patterns: [
    {
      name: 'gnu-pop3d-login',
      kind: 'login',
      needle: "' logged in with mailbox '",
      re: new RegExp(String.raw`^User '(?<user>.*)' logged in with mailbox '[^']{0,1024}' from (?<ip>${IP})$`, 's'),
      service: 'pop3',
    },
  ],
};
