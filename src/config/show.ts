// `relaygate config show` (settings that differ from the defaults, like `postconf -n`) and the commented
// template that becomes contrib/relaygate.toml (every option, commented out at its default).
// Security: output only; values come from the validated Config.

import { OPTION_DOCS, type Config } from './schema.ts';
import { parseConfig } from './load.ts';
import { formatDuration } from './duration.ts';

const DURATION_KEYS = new Set(['grace', 'sweep_interval', 'relayhost_timeout', 'idle_timeout', 'greeting_delay', 'timeout', 'throttle_window', 'throttle_lockout']);

const SECRET_KEYS = /pass|secret|token|key$/;
/** Settings whose whole value is secret: push_key, and every secret in [feed] keys (the feeder ids stay visible). */
const SECRET_SETTINGS: Record<string, (v: unknown) => string> = {
  push_key: () => '"[redacted]"',
  'feed.keys': (v) => `{ ${Object.keys(v as Record<string, unknown>).map((id) => `${id} = "[redacted]"`).join(', ')} }`,
};

/** A URL's password (`redis://:secret@host`, push_to URLs) is a secret too. */
function withoutUrlPassword(s: string): string {
  if (!/^[a-z][a-z0-9+.-]*:\/\/[^/@\s]*:[^/@\s]*@/i.test(s)) return s;
  try {
    const u = new URL(s);
    if (u.password === '') return s;
    u.password = '***';
    return u.toString();
  } catch {
    return s;
  }
}

function tomlValue(key: string, value: unknown): string {
  if (DURATION_KEYS.has(key) && typeof value === 'number') return JSON.stringify(formatDuration(value));
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    // inline table; secrets are never printed (config show output ends up in tickets and chats)
    const parts = Object.entries(value as Record<string, unknown>).map(([k, v]) => `${k} = ${SECRET_KEYS.test(k) && !k.endsWith('tls_key') ? '"[redacted]"' : tomlValue(k, v)}`);
    return `{ ${parts.join(', ')} }`;
  }
  if (Array.isArray(value)) return `[${value.map((v) => tomlValue('', v)).join(', ')}]`;
  if (typeof value === 'string') return JSON.stringify(withoutUrlPassword(value));
  return String(value);
}

function flatten(config: Config): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [k, v] of Object.entries(config)) {
    if (k === 'watch' || k === 'listen') continue; // arrays of tables: printed as [[watch]] / [[listen]] blocks
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      for (const [sk, sv] of Object.entries(v as Record<string, unknown>)) if (sv !== undefined) out.set(`${k}.${sk}`, sv);
    } else if (v !== undefined) {
      out.set(k, v);
    }
  }
  return out;
}

/** `key = value` lines (TOML) for every setting whose effective value differs from the built-in default. */
export function showConfig(config: Config, all = false): string {
  const defaults = flatten(parseConfig({}, '', 'defaults'));
  const lines: string[] = [];
  for (const [k, v] of flatten(config)) {
    if (!all && JSON.stringify(defaults.get(k)) === JSON.stringify(v)) continue;
    lines.push(`${k} = ${Object.hasOwn(SECRET_SETTINGS, k) ? SECRET_SETTINGS[k]!(v) : tomlValue(k.split('.').pop()!, v)}`);
  }
  for (const [table, rows] of [['watch', config.watch], ['listen', config.listen]] as const) {
    for (const w of rows) {
      lines.push('', `[[${table}]]`);
      for (const [k, v] of Object.entries(w)) if (v !== undefined) lines.push(`${k} = ${tomlValue(k, v)}`);
    }
  }
  return lines.length > 0 ? `${lines.join('\n')}\n` : '';
}

/** The full commented template: contrib/relaygate.toml is exactly this text (a test compares them). */
export function defaultsTemplate(): string {
  const out: string[] = [
    '# relaygate configuration. Every option is listed, commented out at its default.',
    '# Remove the leading "#" to change one. Validate with: relaygate config check -c /etc/relaygate/relaygate.toml',
    '# Durations take seconds or a unit: 90s, 30m, 2h, 1d, 1w. Tables are written type:name (inline, texthash, cidr).',
    '',
  ];
  let table = '';
  for (const opt of OPTION_DOCS) {
    const dot = opt.key.indexOf('.');
    const section = dot === -1 ? '' : opt.key.slice(0, dot);
    const name = dot === -1 ? opt.key : opt.key.slice(dot + 1);
    if (section !== table) {
      // [[watch]] is an array of tables: its rows are examples, not defaults.
      out.push(section === 'watch' || section === 'listen' ? `#[[${section}]]` : `#[${section}]`);
      table = section;
    }
    out.push(`# ${opt.doc}${opt.example ? ' (no default; example:)' : ''}`, `#${name} = ${opt.default}`, '');
  }
  return out.join('\n');
}
