// Semantic validation of a schema-valid Config: CIDR lists, restriction names and arguments, table files.
// Runs the same constructors the daemon uses (CidrSet, createEngine), so `relaygate config check` can never
// pass a file that `relaygate run` would then refuse. Every problem is collected; nothing is started.
// Security: a configuration that would make relaygate an open relay (a relay list with no reject) is an error.

import { isRelaygateError } from '../errors.ts';
import { CidrSet } from '../net/index.ts';
import { createEngine } from '../engine/index.ts';
import { silentLogger } from '../log/logger.ts';
import { where, invalid, type LoadedConfig } from './load.ts';

export interface NetworkSets {
  readonly mynetworks: CidrSet;
  readonly neverAuthorize: CidrSet;
}

/** Throws RG_ERR_CONFIG_INVALID listing every semantic problem; returns the compiled network sets. */
export async function validateConfig(loaded: LoadedConfig): Promise<NetworkSets> {
  const { config, text } = loaded;
  const problems: string[] = [];
  const sets: Partial<Record<'mynetworks' | 'never_authorize', CidrSet>> = {};
  for (const key of ['mynetworks', 'never_authorize'] as const) {
    try {
      sets[key] = new CidrSet(config[key], key);
    } catch (err) {
      problems.push(...detailLines(err, [key], text));
    }
  }
  try {
    const engine = await createEngine({
      relayRestrictions: [...config.relay_restrictions],
      senderRestrictions: [...config.sender_restrictions],
      mynetworks: sets.mynetworks ?? new CidrSet([]),
      mydestination: [...config.mydestination],
      relayDomains: [...config.relay_domains],
      senderLoginMaps: [...config.sender_login_maps],
      grants: { lookup: async () => undefined },
      clock: () => Date.now(),
      logger: silentLogger(),
    });
    await engine.close();
  } catch (err) {
    problems.push(...detailLines(err, ['relay_restrictions'], text, true));
  }
  if (problems.length > 0) throw invalid(loaded.file ?? '(built-in defaults)', problems);
  return { mynetworks: sets.mynetworks!, neverAuthorize: sets.never_authorize! };
}

function detailLines(err: unknown, path: string[], text: string, ownKeys = false): string[] {
  if (!isRelaygateError(err)) throw err;
  const lines = err.details.length > 0 ? err.details : [err.message];
  // Engine details already name their list (relay_restrictions / sender_restrictions / sender_login_maps).
  return lines.map((d) => (ownKeys ? locate(d, text) : `${where(path, text)}: ${d}`));
}

function locate(detail: string, text: string): string {
  const m = /^(relay_restrictions|sender_restrictions|sender_login_maps)\b/.exec(detail);
  if (!m) return detail;
  const line = where([m[1]!], text);
  return line === m[1] ? detail : `${line}${detail.slice(m[1]!.length)}`;
}
