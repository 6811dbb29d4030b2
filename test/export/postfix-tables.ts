// Helpers for the export tests: a private Postfix config_directory for postmap -c, and reading a table back
// with Postfix's own postmap (-q for one key, -s for every entry). Real postmap, no mock.
//
// Needs Debian's postfix, postfix-lmdb and postfix-cdb (CI installs them in .ci/run). Missing ones make the
// tests FAIL with an install hint, never skip.
import { access, mkdir, writeFile } from 'node:fs/promises';
import { constants as fsc } from 'node:fs';
import { join } from 'node:path';
import { run } from '../helpers/proc.ts';

export const POSTMAP = '/usr/sbin/postmap';
const INSTALL_HINT =
  'as root: echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postfix postfix-lmdb postfix-cdb (CI installs them in .ci/run)';

/** Fails (never skips) when postmap or a table type the tests use is missing. */
export async function requirePostmap(configDir: string, types: readonly string[] = ['lmdb', 'hash', 'btree', 'cdb']): Promise<void> {
  if (!(await access(POSTMAP, fsc.X_OK).then(() => true, () => false))) throw new Error(`${POSTMAP} is missing; ${INSTALL_HINT}`);
  const r = await run('/usr/sbin/postconf', ['-c', configDir, '-m'], { timeoutMs: 10_000 });
  const have = new Set(r.stdout.split('\n').map((l) => l.trim()));
  const missing = types.filter((t) => !have.has(t));
  if (missing.length > 0) throw new Error(`this Postfix lacks table type(s) ${missing.join(', ')} (postconf -m: ${[...have].join(' ')}); ${INSTALL_HINT}`);
}

/** A Postfix config_directory holding a minimal main.cf (postmap refuses to run without one). */
export async function makeConfigDir(parent: string): Promise<string> {
  const dir = join(parent, 'postfix-etc');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'main.cf'), 'compatibility_level = 3.6\n');
  return dir;
}

/** `postmap -q KEY TABLE`: the value, or undefined when the key is absent. Throws on any other failure. */
export async function query(table: string, key: string, configDir: string): Promise<string | undefined> {
  const r = await run(POSTMAP, ['-c', configDir, '-q', key, table], { timeoutMs: 10_000 });
  if (r.code === 0) return r.stdout.replace(/\n$/, '');
  if (r.code === 1 && !/fatal|error/.test(r.stderr)) return undefined;
  throw new Error(`postmap -q ${key} ${table}: exit ${r.code}: ${r.stderr.trim()}`);
}

/** `postmap -s TABLE`: every entry. */
export async function dump(table: string, configDir: string): Promise<Map<string, string>> {
  const r = await run(POSTMAP, ['-c', configDir, '-s', table], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`postmap -s ${table}: exit ${r.code}: ${r.stderr.trim()}`);
  const out = new Map<string, string>();
  for (const line of r.stdout.split('\n')) {
    if (line === '') continue;
    const tab = line.indexOf('\t');
    out.set(line.slice(0, tab), line.slice(tab + 1));
  }
  return out;
}
