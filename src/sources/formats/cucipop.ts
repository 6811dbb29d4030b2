// cucipop (Cubic Circle's POP3 daemon): the end-of-session line `USER IP N, N (N), N (N)`.
//
// Shape (pop-before-smtp-conf.pl's cucipop entry, "matching a sample from Daniel Roesen"; the shared reference
// log-formats.md; no Debian package in the current release to capture from; cucipop predates IPv6):
//   alice 192.0.2.7 1, 2345 (0), 0 (0)
//
// Security: the message STARTS with the username, so unlike every other format there is no server-written text to
// anchor on at the start: a `.*` user would let any cucipop line that merely ENDS in ` IP N, N (N), N (N)` —
// say a failure message with the username last — plant an address. So the user here is one blank-free token
// (Unix login names have no blanks; pop-before-smtp's pattern used \S+ too), the whole message must be
// `TOKEN IP N, N (N), N (N)`, and the address is IPv4 digits and dots only.

import type { LogFormat } from './types.ts';

export const cucipop: LogFormat = {
  name: 'cucipop',
  description: 'cucipop: the session line `USER IP N, N (N), N (N)`',
  idents: ['cucipop'],
  samples: 'shape from pop-before-smtp-conf.pl and the shared reference; no Debian package: lines written to that shape',
  patterns: [
    {
      name: 'cucipop-login',
      kind: 'login',
      needle: '), ',
      re: /^(?<user>[^\s]{1,128}) (?<ip>[0-9.]{7,15}) \d{1,10}, \d{1,20} \(\d{1,10}\), \d{1,20} \(\d{1,10}\)$/s,
      service: 'pop3',
    },
  ],
};
