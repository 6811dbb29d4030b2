// CIDR sets: `mynetworks`, `never_authorize`, `cidr:` tables and feed allow lists.
//
// Accepted forms (Postfix mynetworks syntax): `192.0.2.0/24`, `192.0.2.7` (a host), `2001:db8::/32`,
// `[2001:db8::]/32`, `[::1]`. An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) is stored as the IPv4
// network it covers, so that it matches the same clients as `10.0.0.0/8`; since normalizeIp() turns
// mapped client addresses into IPv4 too, IPv4 rules match clients seen as `::ffff:a.b.c.d`.
//
// Security: a block with host bits set (`192.0.2.7/24`) is refused, as Postfix does, because the
// operator almost certainly meant something else and guessing could widen the trusted set.

import { isIP } from 'node:net';
import { RelaygateError } from '../errors.ts';
import { formatV6, parseV6 } from './normalize-ip.ts';

export interface Cidr {
  readonly family: 4 | 6;
  /** canonical text, e.g. `192.0.2.0/24` or `2001:db8::/32` */
  readonly text: string;
  readonly prefix: number;
  /** IPv4: the network as an unsigned 32-bit number; IPv6: as a 128-bit bigint */
  readonly network: number | bigint;
}

/**
 * Dotted-quad IPv4 → unsigned 32-bit number, or -1 when `ip` is not exactly four decimal octets.
 * Validating here (not trusting the caller) matters: an earlier version turned junk such as `unknown`
 * into 0, so `0.0.0.0/8` "contained" it.
 */
export function ipv4ToInt(ip: string): number {
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46 /* . */) {
      if (digits === 0 || ++dots > 3) return -1;
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && octet === 0) return -1; // leading zero: 010 is octal to some parsers
      octet = octet * 10 + (c - 48);
      if (++digits > 3 || octet > 255) return -1;
    } else {
      return -1;
    }
  }
  if (dots !== 3 || digits === 0) return -1;
  return value * 256 + octet;
}

/** Textual IPv6 → 128-bit bigint, or undefined when `ip` is not an IPv6 address. */
export function ipv6ToBigInt(ip: string): bigint | undefined {
  if (isIP(ip) !== 6 || ip.includes('%')) return undefined;
  const groups = parseV6(ip);
  if (groups === undefined) return undefined;
  let v = 0n;
  for (const g of groups) v = (v << 16n) | BigInt(g);
  return v;
}

function v4Mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

function v6Mask(prefix: number): bigint {
  return prefix === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - prefix)) - 1n);
}

/** Parses one CIDR block; throws RG_ERR_BAD_ADDRESS with the reason. */
export function parseCidr(input: string): Cidr {
  const bad = (why: string): never => {
    throw new RelaygateError('RG_ERR_BAD_ADDRESS', `invalid network ${JSON.stringify(input)}: ${why}`);
  };
  if (typeof input !== 'string' || input.trim() === '') bad('empty');
  const raw = input.trim();
  const slash = raw.indexOf('/');
  let addr = slash === -1 ? raw : raw.slice(0, slash);
  const lenText = slash === -1 ? undefined : raw.slice(slash + 1);
  if (addr.startsWith('[') && addr.endsWith(']')) addr = addr.slice(1, -1);
  if (addr.includes('%')) bad('zone ids are not allowed');
  const family = isIP(addr);
  if (family === 0) bad('expected addr/len with a literal IPv4 or IPv6 address');
  if (lenText !== undefined && !/^\d{1,3}$/.test(lenText)) bad('prefix length must be a number');
  const max = family === 4 ? 32 : 128;
  const prefix = lenText === undefined ? max : Number(lenText);
  if (prefix > max) bad(`prefix length must be 0..${max}`);

  if (family === 6) {
    const value = ipv6ToBigInt(addr);
    if (value === undefined) return bad('expected addr/len with a literal IPv4 or IPv6 address');
    // ::ffff:0:0/96 and longer: the IPv4-mapped space, stored as IPv4 (normalizeIp() turns mapped clients
    // into IPv4, so an IPv6 block here would never match anyone).
    if (prefix >= 96 && value >> 32n === 0xffffn) {
      const v4prefix = prefix - 96;
      const v4value = Number(value & 0xffffffffn);
      const v4mask = v4Mask(v4prefix);
      if (((v4value & v4mask) >>> 0) !== v4value) {
        // Name the fix in the operator's own (IPv6) notation, and quote what they wrote.
        bad(`host bits are set; perhaps you meant ::ffff:${intToIpv4((v4value & v4mask) >>> 0)}/${prefix}`);
      }
      return { family: 4, prefix: v4prefix, network: v4value, text: `${intToIpv4(v4value)}/${v4prefix}` };
    }
    const mask = v6Mask(prefix);
    if ((value & mask) !== value) {
      const fixed = formatBig(value & mask);
      bad(`host bits are set; perhaps you meant ${fixed}/${prefix}`);
    }
    const net = formatBig(value);
    return { family: 6, prefix, network: value, text: `${net}/${prefix}` };
  }
  const value = ipv4ToInt(addr);
  if (value < 0) return bad('expected addr/len with a literal IPv4 or IPv6 address');
  const mask = v4Mask(prefix);
  if (((value & mask) >>> 0) !== value) {
    bad(`host bits are set; perhaps you meant ${intToIpv4((value & mask) >>> 0)}/${prefix}`);
  }
  return { family: 4, prefix, network: value, text: `${addr}/${prefix}` };
}

function intToIpv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;
}

function formatBig(v: bigint): string {
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((v >> BigInt(i * 16)) & 0xffffn));
  // formatV6, not normalizeIp: a network is never shown as IPv4 here (mapped blocks were handled above).
  return formatV6(groups);
}

/** Does the (already normalized) address lie inside the block? Anything that is not an address: no. */
export function cidrContains(block: Cidr, ip: string): boolean {
  let v4: number;
  if (ip.includes(':')) {
    const v = ipv6ToBigInt(ip);
    if (v === undefined) return false;
    if (v >> 32n !== 0xffffn) return block.family === 6 && (v & v6Mask(block.prefix)) === block.network;
    v4 = Number(v & 0xffffffffn); // IPv4-mapped: compare as IPv4, like CidrSet.match()
  } else {
    v4 = ipv4ToInt(ip);
    if (v4 < 0) return false;
  }
  return block.family === 4 && ((v4 & v4Mask(block.prefix)) >>> 0) === block.network;
}

/**
 * An ordered list of CIDR blocks with a fast membership test. Build it from configuration strings;
 * every malformed entry is reported at once (RG_ERR_BAD_ADDRESS with one detail line per entry).
 */
export class CidrSet {
  readonly blocks: readonly Cidr[];
  // [network, mask, block] per family, in configuration order, so match() is as cheap as contains().
  private readonly v4: ReadonlyArray<readonly [number, number, Cidr]>;
  private readonly v6: ReadonlyArray<readonly [bigint, bigint, Cidr]>;

  constructor(entries: readonly string[], what = 'network list') {
    const blocks: Cidr[] = [];
    const problems: string[] = [];
    for (const e of entries) {
      try {
        blocks.push(parseCidr(e));
      } catch (err) {
        problems.push((err as Error).message);
      }
    }
    if (problems.length > 0) {
      throw new RelaygateError('RG_ERR_BAD_ADDRESS', `${what}: ${problems.length} invalid entr${problems.length === 1 ? 'y' : 'ies'}`, {
        details: problems,
      });
    }
    this.blocks = blocks;
    this.v4 = blocks.filter((b) => b.family === 4).map((b) => [b.network as number, v4Mask(b.prefix), b] as const);
    this.v6 = blocks.filter((b) => b.family === 6).map((b) => [b.network as bigint, v6Mask(b.prefix), b] as const);
  }

  get size(): number {
    return this.blocks.length;
  }

  /**
   * `ip` should already be normalized (normalizeIp). As a second line of defence an IPv4-mapped spelling
   * (`::ffff:10.1.2.3`) is still matched against the IPv4 blocks. Anything that is not a literal address
   * (junk, `unknown`, a hostname, a zone id) never matches.
   */
  contains(ip: string): boolean {
    return this.match(ip) !== undefined;
  }

  /** The first block, in configuration order, containing `ip`: for traces and logs. */
  match(ip: string): Cidr | undefined {
    if (typeof ip !== 'string') return undefined;
    if (ip.includes(':')) {
      const v = ipv6ToBigInt(ip);
      if (v === undefined) return undefined;
      if (v >> 32n === 0xffffn) return this.match4(Number(v & 0xffffffffn));
      for (const [net, mask, block] of this.v6) if ((v & mask) === net) return block;
      return undefined;
    }
    const v = ipv4ToInt(ip);
    return v < 0 ? undefined : this.match4(v);
  }

  private match4(v: number): Cidr | undefined {
    for (const [net, mask, block] of this.v4) if (((v & mask) >>> 0) === net) return block;
    return undefined;
  }
}
