// Small output helpers for the one-shot commands: JSON or aligned text, always to stdout.
// Security: values shown come from the store and the engine; control characters are escaped by printable().

import { printable } from '../log/format.ts';
import type { Grant } from '../store/index.ts';

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function iso(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? '-' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function grantJson(g: Grant): Record<string, unknown> {
  return { ...g, firstSeen: iso(g.firstSeen), lastSeen: iso(g.lastSeen), expires: iso(g.expires) };
}

/** Aligned columns, header first. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [header, ...rows].map((r) => r.map((c) => printable(c)));
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return `${all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n')}\n`;
}

export function grantLine(g: Grant): string[] {
  return [g.ip, g.user ?? '-', g.service ?? '-', g.source, iso(g.expires), String(g.count)];
}

export const GRANT_HEADER = ['ip', 'user', 'service', 'source', 'expires', 'count'];
