// Semantic validation of a schema-valid Config: CIDR lists, restriction names and arguments, table files.
// Runs the same constructors the daemon uses (CidrSet, createEngine), so `relaygate config check` can never
// pass a file that `relaygate run` would then refuse. Every problem is collected; nothing is started.
// Security: a configuration that would make relaygate an open relay (a relay list with no reject) is an error.

import { sunsetProblems, type SunsetOptions } from '../engine/sunset.ts';
import { isRelaygateError } from '../errors.ts';
import { CidrSet } from '../net/index.ts';
import { createEngine } from '../engine/index.ts';
import { silentLogger } from '../log/logger.ts';
import { where, invalid, type LoadedConfig } from './load.ts';
import type { Config, WatchConfig } from './schema.ts';
import { FORMATS } from '../sources/formats/index.ts';
import { compileCustomPattern } from '../sources/parser.ts';
import { gatewayConfigProblems, parseEndpoint } from '../frontends/smtp/endpoints.ts';
import { storeConfigProblems } from '../store/config.ts';
import { httpFeedConfigProblems } from '../feeds/http-feed.ts';
import { pushConfigProblems } from '../push/index.ts';
import { feedConfigProblems } from '../feeds/config.ts';
import { exportConfigProblems } from '../export/config.ts';
import { policyEngineOptions, policyRestrictionProblems, postfixFrontendProblems } from '../frontends/postfix/config.ts';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

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
  problems.push(...sunsetProblems(sunsetOptions(config)));
  problems.push(...httpProblems(config));
  config.watch.forEach((w, i) => problems.push(...watchProblems(w, i, text)));
  // One position per file: two [[watch]] tables on the same path would overwrite each other's position.
  const seen = new Map<string, number>();
  config.watch.forEach((w, i) => {
    if (w.path === undefined) return;
    const abs = resolve(w.path);
    const first = seen.get(abs);
    if (first !== undefined) problems.push(`watch[${i}].path: ${abs} is already watched by watch[${first}]; one [[watch]] per file`);
    else seen.set(abs, i);
  });
  if (config.watch.filter((w) => w.stdin === true).length > 1) problems.push('watch: more than one [[watch]] reads stdin');
  problems.push(...gatewayConfigProblems(config));
  problems.push(...storeConfigProblems(config.store, text)); // [store]: type = "redis" needs a url, a password off loopback, ...
  problems.push(...httpFeedConfigProblems(config), ...pushConfigProblems(config)); // [feed] and push_*: signed HTTP feed, both sides
  problems.push(...feedConfigProblems(config)); // [drac], [whoson]: addresses, allow lists, loopback-only default
  problems.push(...exportConfigProblems(config.export, text)); // [export]: table syntax and type, directories
  problems.push(...postfixFrontendProblems(config, text)); // [policy], [socketmap]: addresses, clients, actions, map names
  if (config.policy.listen !== undefined) {
    // the policy service's own list, compiled as the daemon will (ends in DUNNO; a bare permit is refused)
    try {
      const opts = policyEngineOptions(config, { mynetworks: sets.mynetworks ?? new CidrSet([]), grants: { lookup: async () => undefined }, clock: () => Date.now(), logger: silentLogger() });
      await (await createEngine(opts)).close();
    } catch (err) {
      problems.push(...policyRestrictionProblems(err, text));
    }
  }
  if (problems.length > 0) throw invalid(loaded.file ?? '(built-in defaults)', problems);
  return { mynetworks: sets.mynetworks!, neverAuthorize: sets.never_authorize! };
}

/** A [[watch]] table: known format, compilable custom pattern, an existing directory for its path. */
function watchProblems(w: WatchConfig, i: number, text: string): string[] {
  const out: string[] = [];
  const at = (key: string) => `watch[${i}].${key}${lineOfWatchKey(text, i, key)}`;
  if (!Object.hasOwn(FORMATS, w.format)) out.push(`${at('format')}: unknown format ${JSON.stringify(w.format)}; known: ${Object.keys(FORMATS).join(', ')}`);
  if (w.pattern !== undefined) {
    try {
      compileCustomPattern(w.pattern);
    } catch (err) {
      out.push(`${at('pattern')}: ${(err as Error).message}`);
    }
  }
  if (w.path !== undefined) {
    const dir = dirname(resolve(w.path));
    if (!existsSync(dir)) out.push(`${at('path')}: directory ${dir} does not exist (the file itself may appear later, its directory must exist)`);
  }
  return out;
}

/** ` (line N)` for a key inside the i-th [[watch]] table, when written there. */
function lineOfWatchKey(text: string, index: number, key: string): string {
  const lines = text.split('\n');
  let seen = -1;
  for (let n = 0; n < lines.length; n++) {
    const l = lines[n]!;
    if (/^\s*\[\[\s*watch\s*\]\]/.test(l)) seen++;
    else if (/^\s*\[/.test(l)) {
      if (seen === index) break;
    } else if (seen === index && new RegExp(`^\\s*${key}\\s*=`).test(l)) return ` (line ${n + 1})`;
  }
  return '';
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

/** The sunset settings of a configuration, as the engine's SunsetPolicy takes them. */
export function sunsetOptions(config: Config): SunsetOptions {
  return {
    entries: config.pop_before_smtp_sunset,
    text: config.pop_before_smtp_sunset_text,
    header: config.pop_before_smtp_sunset_header,
  };
}

/** [http]: an IP literal and port, and a valid allow list. */
function httpProblems(config: Config): string[] {
  const out: string[] = [];
  if (config.http.listen !== undefined) {
    const ep = parseEndpoint(config.http.listen, { allowPortZero: true });
    if (typeof ep === 'string') out.push(`http.listen: ${JSON.stringify(config.http.listen)}: ${ep}`);
  }
  try {
    new CidrSet(config.http.allow, 'http.allow');
  } catch (err) {
    out.push(`http.allow: ${(err as Error).message}`);
  }
  return out;
}
