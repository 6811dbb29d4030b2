// The benchmark table: each figure beside its same-run baseline, the ratio, and the target.
import type { BenchResult } from './types.ts';

function fmt(n: number): string {
  return n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(2);
}

export function formatResults(results: readonly BenchResult[]): string {
  const rows = results.map((r) => [
    r.name,
    `${fmt(r.value)} ${r.unit}`,
    r.baseline ? `${r.baseline.name}: ${fmt(r.baseline.value)} ${r.baseline.unit}` : '-',
    r.ratio === undefined ? '-' : `${(r.ratio * 100).toFixed(0)}%`,
    r.target ?? '-',
    r.pass === undefined ? '-' : r.pass ? 'ok' : 'MISSED',
  ]);
  const header = ['benchmark', 'value', 'baseline (same run)', 'ratio', 'target', 'result'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: readonly string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
