// Who may talk to the unauthenticated feeds (DRAC, whoson): CIDR allow lists and DRAC's `dracd.allow` file.
//
// dracd.allow (rpc.dracd 1.12): one `netmask netaddr` pair per line, the MASK FIRST, both dotted quads;
// lines starting with `#` are comments. rpc.dracd permits a caller when (caller & mask) == addr. As a
// relaygate extension a line may instead hold one CIDR block (`192.0.2.0/24`, `2001:db8::/32`), which is
// how IPv6 callers are allowed.
// With neither an allow list nor an allow file, only loopback callers are allowed (rpc.dracd allows only
// the host's own addresses when it has no file).
// Security: every malformed line is a start-up error naming its line, never skipped: a silently ignored
// line would leave a POP server locked out, and a guessed one could let the world in. A mask with holes
// (255.0.255.0) and a network with host bits set are refused for the same reason; `0.0.0.0/0`-style
// entries (everyone) are refused where a caller could create grants (checked in config.ts).

import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { CidrSet, parseCidr } from '../net/index.ts';
import { ipv4ToInt } from '../net/cidr.ts';

export const LOOPBACK_ONLY: readonly string[] = ['127.0.0.0/8', '::1/128'];

export interface ParsedAllowFile {
  /** CIDR blocks, canonical text */
  readonly entries: string[];
  /** `line N: problem` */
  readonly problems: string[];
}

function maskPrefix(mask: string): number | undefined {
  const v = ipv4ToInt(mask);
  if (v < 0) return undefined;
  // contiguous: ones then zeros
  const inv = ~v >>> 0;
  if ((inv & (inv + 1)) !== 0) return undefined;
  let bits = 0;
  for (let m = v; m !== 0; m = (m << 1) >>> 0) bits++;
  return bits;
}

function intToIpv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;
}

/** Parses the text of a dracd.allow file. */
export function parseDracAllow(text: string): ParsedAllowFile {
  const entries: string[] = [];
  const problems: string[] = [];
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const n = i + 1;
    const line = raw.replace(/#.*$/, '').trim();
    if (line === '') return;
    const fields = line.split(/\s+/);
    if (fields.length === 1) {
      try {
        entries.push(parseCidr(fields[0]!).text);
      } catch (err) {
        problems.push(`line ${n}: ${(err as Error).message}; expected "netmask netaddr" (mask first, e.g. "255.255.255.0 192.0.2.0") or one CIDR block`);
      }
      return;
    }
    if (fields.length !== 2) {
      problems.push(`line ${n}: expected "netmask netaddr" (two dotted quads, mask first), got ${fields.length} fields`);
      return;
    }
    const [maskText, addrText] = fields as [string, string];
    const prefix = maskPrefix(maskText);
    const addr = ipv4ToInt(addrText);
    if (prefix === undefined) {
      const swapped = maskPrefix(addrText) !== undefined && ipv4ToInt(maskText) >= 0;
      problems.push(
        swapped
          ? `line ${n}: the netmask comes first in dracd.allow: write "${addrText} ${maskText}"`
          : `line ${n}: ${JSON.stringify(maskText)} is not a netmask (a dotted quad of leading one bits, e.g. 255.255.255.0)`,
      );
      return;
    }
    if (addr < 0) {
      problems.push(`line ${n}: ${JSON.stringify(addrText)} is not an IPv4 address`);
      return;
    }
    const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
    if (((addr & mask) >>> 0) !== addr) {
      // rpc.dracd would compare (caller & mask) == addr, which can never hold: the line would allow nobody.
      problems.push(`line ${n}: ${addrText} has host bits outside ${maskText}; perhaps you meant "${maskText} ${intToIpv4((addr & mask) >>> 0)}"`);
      return;
    }
    entries.push(`${intToIpv4(addr)}/${prefix}`);
  });
  return { entries, problems };
}

export async function readDracAllow(path: string): Promise<ParsedAllowFile> {
  return parseDracAllow(await readFile(path, 'utf8'));
}

/** Synchronous variant for configuration validation (start-up only, never on a request path). */
export function readDracAllowSync(path: string): ParsedAllowFile {
  return parseDracAllow(readFileSync(path, 'utf8'));
}

/** The CidrSet a feed checks callers against: the given entries, or loopback only when there are none. */
export function allowSet(entries: readonly string[] | undefined, what: string): CidrSet {
  return new CidrSet(entries === undefined || entries.length === 0 ? LOOPBACK_ONLY : entries, what);
}

/** Is this (normalized) listener address loopback? 127.0.0.0/8 and ::1. The wildcards are not. */
export function isLoopbackAddress(ip: string): boolean {
  return ip === '::1' || /^127\./.test(ip);
}
