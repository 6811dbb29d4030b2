// TeaPOP: `Successful login for USER [IP]`.
//
// Shape (pop-before-smtp-conf.pl's teapop entry, "by Patrick Prasse"; the shared reference log-formats.md; no
// Debian package to capture from):
//   Successful login for alice [192.0.2.7]
//
// Security: the username is printed unescaped. Anchored at `Successful login for ` at the start of the message
// and at the end of the line; the greedy `user` group makes the last bracket — the one TeaPOP wrote — the
// captured address, so `alice [6.6.6.6]` as a username changes nothing.

import type { LogFormat } from './types.ts';

const IP = '[0-9a-fA-F:.]+';

export const teapop: LogFormat = {
  name: 'teapop',
  description: 'TeaPOP: `Successful login for USER [IP]`',
  idents: ['teapop'],
  samples: 'shape from pop-before-smtp-conf.pl and the shared reference; no Debian package: lines written to that shape',
  patterns: [
    {
      name: 'teapop-login',
      kind: 'login',
      needle: 'Successful login for ',
      re: new RegExp(String.raw`^Successful login for (?<user>.*) \[(?<ip>${IP})\]$`, 's'),
      service: 'pop3',
    },
  ],
};
