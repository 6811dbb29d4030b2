// normalizeIp(): the one gate every IP address passes before relaygate uses it, whether it came from a
// log line, a socket, a network feed, a policy request or the command line.
//
// Output: IPv4 in dotted quad; IPv6 in RFC 5952 canonical text (lower case, no leading zeros, the first
// longest run of two or more zero groups compressed, a single zero group never compressed); an
// IPv4-mapped IPv6 address (::ffff:a.b.c.d, any spelling) becomes the plain IPv4 address, so a client
// seen over a dual-stack socket and the same client seen in an IPv4 log line share one grant.
//
// Security: the input is untrusted. Anything that is not a literal address is refused: hostnames, the
// string `unknown` (Postfix and Dovecot write it when there is no address), zone ids (`fe80::1%eth0` names
// an interface, not a host), brackets, whitespace, IPv4 with leading zeros (010.0.0.1 is octal to some
// parsers), and over-long strings. A refusal is `undefined` here; callers decide how to report it.

import { isIP } from 'node:net';
import { RelaygateError } from '../errors.ts';

/** Longest textual IPv6 address with an embedded IPv4 tail is 45 characters. */
const MAX_LEN = 45;

/** Returns the canonical form, or undefined when `input` is not a literal IP address. */
export function normalizeIp(input: string): string | undefined {
  if (typeof input !== 'string' || input.length === 0 || input.length > MAX_LEN) return undefined;
  const family = isIP(input);
  if (family === 4) return input; // node's isIP is strict: no leading zeros, no short forms
  if (family !== 6 || input.includes('%')) return undefined;
  const groups = parseV6(input);
  if (groups === undefined) return undefined;
  // IPv4-mapped (::ffff:0:0/96) → the IPv4 address it carries.
  if (groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff) {
    const hi = groups[6]!;
    const lo = groups[7]!;
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  return formatV6(groups);
}

/** Like normalizeIp, but throws RG_ERR_BAD_ADDRESS naming the input (for configuration and the CLI). */
export function requireIp(input: string, what = 'IP address'): string {
  const ip = normalizeIp(input);
  if (ip === undefined) {
    const shown = JSON.stringify(input.length > 64 ? `${input.slice(0, 64)}…` : input);
    throw new RelaygateError('RG_ERR_BAD_ADDRESS', `invalid ${what} ${shown}: expected a literal IPv4 or IPv6 address`);
  }
  return ip;
}

/** Parses a textual IPv6 address that node's isIP() already accepted into eight 16-bit groups. */
export function parseV6(text: string): number[] | undefined {
  let s = text.toLowerCase();
  let tail: number[] = [];
  const lastColon = s.lastIndexOf(':');
  const after = s.slice(lastColon + 1);
  if (after.includes('.')) {
    const v4 = after.split('.').map(Number);
    if (v4.length !== 4 || v4.some((n) => !Number.isInteger(n) || n < 0 || n > 255)) return undefined;
    tail = [(v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!];
    s = s.slice(0, lastColon + 1) + '0:0'; // placeholder groups, replaced below
  }
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((h) => parseInt(h, 16)));
  let groups: number[];
  if (halves.length === 2) {
    const head = parse(halves[0]!);
    const rest = parse(halves[1]!);
    const fill = 8 - head.length - rest.length;
    if (fill < 1) return undefined;
    groups = [...head, ...new Array<number>(fill).fill(0), ...rest];
  } else {
    groups = parse(s);
  }
  if (groups.length !== 8 || groups.some((g) => !Number.isInteger(g) || g < 0 || g > 0xffff)) return undefined;
  if (tail.length === 2) {
    groups[6] = tail[0]!;
    groups[7] = tail[1]!;
  }
  return groups;
}

/** RFC 5952 §4: lower-case hex, no leading zeros, compress the first longest run (length ≥ 2) of zeros. */
export function formatV6(groups: readonly number[]): string {
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestLen < 2) return hex.join(':');
  const head = hex.slice(0, bestStart).join(':');
  const tail = hex.slice(bestStart + bestLen).join(':');
  return `${head}::${tail}`;
}
