// Loading configuration: TOML text → zod schema → one frozen Config, with every problem reported at once.
//
// Where the file comes from: `-c FILE`; else ./relaygate.toml when it exists; else the built-in defaults.
// Each problem names its key and, where the key is written in the file, its line, so an operator can fix
// all of them in one edit. Semantic checks that need other modules (CIDR syntax, restriction names,
// table files) run in validate.ts, which adds its problems to the same list.
// Security: the file is trusted operator input, but it is still validated completely before anything starts.

import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as parseToml, TomlError } from 'smol-toml';
import type { z } from 'zod';
import { RelaygateError } from '../errors.ts';
import { configSchema, type Config } from './schema.ts';

export const DEFAULT_CONFIG_FILE = 'relaygate.toml';

export interface LoadedConfig {
  readonly config: Config;
  /** absolute path of the file read, or null for built-in defaults */
  readonly file: string | null;
  /** the raw table as written in the file (for `config show`) */
  readonly raw: Readonly<Record<string, unknown>>;
  /** the file's text, for locating keys in later (semantic) error messages */
  readonly text: string;
}

/** Picks the file the way every command does: explicit -c, else ./relaygate.toml, else none. */
export function resolveConfigFile(explicit: string | undefined, cwd = process.cwd()): string | null {
  if (explicit !== undefined) return resolve(cwd, explicit);
  const local = resolve(cwd, DEFAULT_CONFIG_FILE);
  return existsSync(local) ? local : null;
}

export async function loadConfig(explicit?: string, cwd = process.cwd()): Promise<LoadedConfig> {
  const file = resolveConfigFile(explicit, cwd);
  if (file === null) return { config: parseConfig({}, '', '(built-in defaults)'), file: null, raw: {}, text: '' };
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new RelaygateError('RG_ERR_CONFIG_READ', `cannot read configuration file ${file}: ${e.code ?? e.message}`, { cause: err });
  }
  const raw = parseConfigText(text, file);
  return { config: parseConfig(raw, text, file), file, raw, text };
}

export function parseConfigText(text: string, file: string): Record<string, unknown> {
  try {
    return parseToml(text) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof TomlError) {
      const first = err.message.split('\n')[0];
      throw new RelaygateError('RG_ERR_CONFIG_READ', `${file}:${err.line}:${err.column}: ${first}`, {
        cause: err,
        details: [err.codeblock],
      });
    }
    throw new RelaygateError('RG_ERR_CONFIG_READ', `${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** Validates a parsed table against the schema; throws RG_ERR_CONFIG_INVALID listing every problem. */
export function parseConfig(raw: Record<string, unknown>, text: string, file: string): Config {
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const problems = result.error.issues.flatMap((issue) => describeIssue(issue, text));
    throw invalid(file, problems);
  }
  return deepFreeze(result.data) as Config;
}

export function invalid(file: string, problems: readonly string[]): RelaygateError {
  return new RelaygateError(
    'RG_ERR_CONFIG_INVALID',
    `${file}: ${problems.length} configuration error${problems.length === 1 ? '' : 's'}`,
    { details: problems },
  );
}

function describeIssue(issue: z.core.$ZodIssue, text: string): string[] {
  const path = issue.path.map(String);
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((k) => {
      const key = [...path, k];
      return `${where(key, text)}: unknown key (check the spelling against contrib/relaygate.toml)`;
    });
  }
  return [`${where(path, text)}: ${issue.message}`];
}

/** `key (line N)` — the dotted key, plus its line in the file when it is written there. */
export function where(path: readonly string[], text: string): string {
  const named = path.filter((p) => !/^\d+$/.test(p));
  const dotted = path.map((p) => (/^\d+$/.test(p) ? `[${p}]` : p)).join('.').replace(/\.\[/g, '[') || '(top level)';
  const line = findKeyLine(named, text);
  return line === undefined ? dotted : `${dotted} (line ${line})`;
}

/** Finds the line that sets `path` in TOML text: a top-level key, or a key under its [table] header. */
export function findKeyLine(path: readonly string[], text: string): number | undefined {
  if (path.length === 0 || text === '') return undefined;
  const lines = text.split('\n');
  const key = path[path.length - 1]!;
  const table = path.slice(0, -1).join('.');
  let current = '';
  const keyRe = new RegExp(`^\\s*("?)${escapeRe(key)}\\1\\s*=`);
  const dottedRe = table === '' ? null : new RegExp(`^\\s*${escapeRe(table)}\\.${escapeRe(key)}\\s*=`);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const header = /^\s*\[\[?\s*([^\]]+?)\s*\]\]?/.exec(line);
    if (header) {
      current = header[1]!;
      if (current === path.join('.')) return i + 1; // the table itself, e.g. an unknown [table]
      continue;
    }
    if (current === table && keyRe.test(line)) return i + 1;
    if (current === '' && dottedRe?.test(line)) return i + 1;
  }
  return undefined;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v);
  }
  return value;
}
