// Table keys and values as Postfix's check_client_access looks them up.
//
// Keys: smtpd prints the client address with getnameinfo(NI_NUMERICHOST) after turning an IPv4-mapped
// address into plain IPv4 (smtpd_peer.c, sane_sockaddr_to_hostaddr), and access(5) looks the whole address
// up first, then (for file tables) shorter prefixes. IPv4 is a dotted quad. IPv6 is glibc's inet_ntop text:
// lower case, no leading zeros, the first longest run of two or more zero groups written `::` — the same as
// RFC 5952 (normalizeIp's output) except for one case: an address whose first 96 bits are zero and whose
// seventh group is not (the deprecated IPv4-compatible form) is printed with a dotted tail, `::1.2.3.4`
// rather than `::102:304`. Checked against glibc 2.36's inet_ntop on this machine.
//
// Values: `OK`, or the grant's expiry as Unix seconds; access(5) "ACCEPT ACTIONS": "An all-numerical
// result is treated as OK" (the format DRAC and pop-before-smtp wrote).
//
// Security: a key is only ever an address that normalizeIp() accepted, re-checked here, so no log field
// (a user name, a hostname, `unknown`) can become a key, and no key can hold the whitespace or newline
// that would split a postmap input line into a second entry.

import { normalizeIp, parseV6 } from '../net/normalize-ip.ts';

export type ExportValue = 'OK' | 'expiry';

/** The lookup key Postfix uses for client `ip`, or undefined when `ip` is not a canonical address. */
export function postfixClientKey(ip: string): string | undefined {
  const canonical = normalizeIp(ip);
  // Only canonical text is accepted: two spellings of one address must never become two keys.
  if (canonical === undefined || canonical !== ip) return undefined;
  if (!canonical.includes(':')) return canonical;
  const g = parseV6(canonical);
  if (g === undefined) return undefined;
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0 && g[6] !== 0) {
    return `::${g[6]! >> 8}.${g[6]! & 0xff}.${g[7]! >> 8}.${g[7]! & 0xff}`;
  }
  return canonical;
}

/** The table value for a grant that expires at `expires` (ms). */
export function tableValue(mode: ExportValue, expires: number): string {
  return mode === 'OK' ? 'OK' : String(Math.ceil(expires / 1000));
}
