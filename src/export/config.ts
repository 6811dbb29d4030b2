// The `[export]` settings and their semantic checks (run by `relaygate config check` and `relaygate run`
// through config/validate.ts): table syntax and type, directories that must exist. What depends on the
// installed Postfix (postmap present and executable, the type in `postconf -m`) is checked when the export
// starts, with its own error codes (RG_ERR_POSTMAP, RG_ERR_EXPORT_TABLE).
// Security: operator configuration; checked completely before anything is written.

import { existsSync, statSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { where } from '../config/load.ts';
import type { ExportValue } from './keys.ts';
import { parseTableSpec } from './table-spec.ts';

/** `[export]` as the schema returns it. */
export interface ExportSettings {
  /** `type:/path/name`; unset = no export */
  readonly table?: string | undefined;
  readonly value: ExportValue;
  readonly postmap?: string | undefined;
  readonly config_directory?: string | undefined;
}

export function exportConfigProblems(settings: ExportSettings, text = ''): string[] {
  const problems: string[] = [];
  const at = (key: string) => where(['export', key], text);
  if (settings.table === undefined) {
    for (const key of ['postmap', 'config_directory'] as const) {
      if (settings[key] !== undefined) problems.push(`${at(key)}: has no effect without export.table; set table = "lmdb:/path/name" to export grants to a Postfix table, or remove ${key}`);
    }
    return problems;
  }
  const spec = parseTableSpec(settings.table);
  if (typeof spec === 'string') problems.push(`${at('table')}: ${spec}`);
  else if (!isDirectory(spec.dir)) problems.push(`${at('table')}: directory ${spec.dir} does not exist; create it (writable by relaygate, readable by Postfix)`);
  const cd = settings.config_directory;
  if (cd !== undefined) {
    if (!isAbsolute(cd)) problems.push(`${at('config_directory')}: ${JSON.stringify(cd)} must be an absolute path (Postfix's config_directory, e.g. "/etc/postfix")`);
    else if (!existsSync(join(cd, 'main.cf'))) problems.push(`${at('config_directory')}: ${join(cd, 'main.cf')} does not exist; postmap -c needs the directory that holds Postfix's main.cf`);
  }
  return problems;
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
