// The [drac] and [whoson] tables, checked before anything listens: `relaygate config check` and `run`
// both call feedConfigProblems() (through config/validate.ts), so a file that passes one passes the other.
//
// Safe defaults (issue 6 item 5): listeners bind loopback unless configured otherwise, and these two
// unauthenticated protocols refuse a non-loopback address (wildcards included) unless the operator wrote
// down who may call. A list entry covering everyone (`0.0.0.0/0`, `::/0`) is refused where callers create
// grants: that would let any host on the Internet make itself a relay client.
// Security: operator data, but checked strictly; each problem names its key and the fix.

import { existsSync } from 'node:fs';
import type { Config, DracConfig, WhosonConfig } from '../config/schema.ts';
import { CidrSet } from '../net/index.ts';
import { parseEndpoint, endpointText, type Endpoint } from '../frontends/smtp/endpoints.ts';
import { isLoopbackAddress, readDracAllowSync } from './allow.ts';

/** Parses listener addresses; problems are pushed as `key: problem`. */
export function parseListeners(key: string, addresses: readonly string[], problems: string[]): Endpoint[] {
  const out: Endpoint[] = [];
  const seen = new Set<string>();
  addresses.forEach((a, i) => {
    const e = parseEndpoint(a, { allowPortZero: true });
    if (typeof e === 'string') {
      problems.push(`${key}[${i}]: ${JSON.stringify(a)}: ${e}`);
      return;
    }
    const text = endpointText(e);
    if (e.port !== 0 && seen.has(text)) problems.push(`${key}[${i}]: ${text} is listed twice`);
    seen.add(text);
    out.push(e);
  });
  return out;
}

function cidrProblems(key: string, entries: readonly string[] | undefined, grantsCreated: boolean, problems: string[]): void {
  if (entries === undefined) return;
  let set: CidrSet;
  try {
    set = new CidrSet(entries, key);
  } catch (err) {
    const details = (err as { details?: readonly string[] }).details ?? [];
    for (const d of details.length > 0 ? details : [(err as Error).message]) problems.push(`${key}: ${d}`);
    return;
  }
  if (grantsCreated) {
    for (const b of set.blocks) {
      if (b.prefix === 0) problems.push(`${key}: ${b.text} allows every host on the Internet to create grants (an open relay); list your POP/IMAP servers' addresses instead`);
    }
  }
}

/** DRAC runs when it has at least one listener address. */
export function dracEnabled(d: DracConfig): boolean {
  return (d.listen_udp?.length ?? 0) + (d.listen_tcp?.length ?? 0) > 0;
}

/** whoson runs when it has at least one listener address. */
export function whosonEnabled(w: WhosonConfig): boolean {
  return (w.listen?.length ?? 0) > 0;
}

export function dracProblems(d: DracConfig): string[] {
  const problems: string[] = [];
  const listeners = [...parseListeners('drac.listen_udp', d.listen_udp ?? [], problems), ...parseListeners('drac.listen_tcp', d.listen_tcp ?? [], problems)];
  cidrProblems('drac.allow', d.allow, true, problems);
  let fileEntries = 0;
  if (d.allow_file !== undefined) {
    if (!existsSync(d.allow_file)) {
      problems.push(`drac.allow_file: ${d.allow_file} does not exist; create it ("netmask netaddr" per line, mask first) or remove the key`);
    } else {
      try {
        const parsed = readDracAllowSync(d.allow_file);
        for (const p of parsed.problems) problems.push(`drac.allow_file ${d.allow_file} ${p}`);
        fileEntries = parsed.entries.length;
        if (parsed.problems.length === 0 && parsed.entries.length === 0) problems.push(`drac.allow_file: ${d.allow_file} allows nobody (no entries); add "netmask netaddr" lines or remove the key`);
        cidrProblems(`drac.allow_file ${d.allow_file}`, parsed.entries, true, problems);
      } catch (err) {
        problems.push(`drac.allow_file: cannot read ${d.allow_file}: ${(err as Error).message}`);
      }
    }
  }
  const hasAllow = (d.allow?.length ?? 0) > 0 || fileEntries > 0 || d.allow_file !== undefined;
  if (!hasAllow) {
    for (const e of listeners) {
      if (!isLoopbackAddress(e.host)) {
        problems.push(
          `drac: ${endpointText(e)} is not a loopback address, and neither drac.allow nor drac.allow_file says who may add grants; list your POP/IMAP servers (allow = ["192.0.2.10/32"]) or listen on 127.0.0.1`,
        );
      }
    }
  }
  if (d.rpcbind === true && listeners.length > 0 && !listeners.some((e) => !e.host.includes(':'))) {
    problems.push('drac.rpcbind: the portmapper (PMAP v2) publishes IPv4 ports only; add an IPv4 address to listen_udp or listen_tcp, or set rpcbind = false');
  }
  return problems;
}

export function whosonProblems(w: WhosonConfig): string[] {
  const problems: string[] = [];
  const listeners = parseListeners('whoson.listen', w.listen ?? [], problems);
  cidrProblems('whoson.allow_login', w.allow_login, true, problems);
  cidrProblems('whoson.allow_query', w.allow_query, false, problems);
  if (w.allow_login === undefined && w.allow_query === undefined) {
    for (const e of listeners) {
      if (!isLoopbackAddress(e.host)) {
        problems.push(
          `whoson: ${endpointText(e)} is not a loopback address, and neither whoson.allow_login nor whoson.allow_query says who may call; set them (e.g. allow_login = ["192.0.2.10/32"], allow_query = ["192.0.2.25/32"]) or listen on 127.0.0.1`,
        );
      }
    }
  }
  return problems;
}

/**
 * Every problem of the [drac] and [whoson] tables (empty when fine). Checked even while a server is off
 * (no listener), so a bad allow list is reported before someone adds the address that turns it on.
 */
export function feedConfigProblems(config: Config): string[] {
  return [...dracProblems(config.drac), ...whosonProblems(config.whoson)];
}
