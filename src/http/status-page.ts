// The read-only status page: active grants, relaying per method per day over the last 30 days (an inline
// SVG stacked bar chart, no script), and the users still relaying on POP-before-SMTP.
// Security: every value (user names from logs and SASL, sources, addresses) is HTML-escaped; the page has no
// script and is served with a Content-Security-Policy that allows none; no form, no state change.

import type { Grant } from '../store/types.ts';
import type { DayUsage } from '../usage/usage-log.ts';
import type { PopDependent } from '../usage/report.ts';

export interface StatusData {
  readonly now: number;
  readonly hostname: string;
  readonly version: string;
  readonly grants: readonly Grant[];
  readonly grantsTotal: number;
  readonly days: readonly DayUsage[];
  readonly dependents: readonly PopDependent[];
  readonly usageLog: boolean;
}

const METHODS = [
  { key: 'sasl', label: 'SMTP AUTH', color: '#2563eb' },
  { key: 'pop', label: 'POP-before-SMTP', color: '#ea580c' },
  { key: 'mynetworks', label: 'mynetworks', color: '#6b7280' },
] as const;

export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function iso(ms: number | null): string {
  return ms === null ? 'never' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Stacked bars, one per day; each rect carries data-day/-method/-count so the page can be checked. */
export function chartSvg(days: readonly DayUsage[]): string {
  const W = 760;
  const H = 240;
  const left = 48;
  const bottom = 28;
  const top = 12;
  const plotH = H - bottom - top;
  const max = Math.max(1, ...days.map((d) => d.counts.sasl + d.counts.pop + d.counts.mynetworks));
  const step = (W - left - 8) / Math.max(1, days.length);
  const barW = Math.max(2, step * 0.7);
  const parts: string[] = [];
  // y axis: 0, max/2, max
  for (const f of [0, 0.5, 1]) {
    const y = top + plotH - f * plotH;
    parts.push(`<line x1="${left}" x2="${W - 4}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" stroke="#e5e7eb"/>`);
    parts.push(`<text x="${left - 6}" y="${(y + 4).toFixed(1)}" text-anchor="end" font-size="11" fill="#374151">${Math.round(f * max)}</text>`);
  }
  days.forEach((d, i) => {
    const x = left + i * step + (step - barW) / 2;
    let y = top + plotH;
    for (const m of METHODS) {
      const n = d.counts[m.key];
      if (n <= 0) continue;
      const h = (n / max) * plotH;
      y -= h;
      parts.push(
        `<rect class="bar" x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${barW.toFixed(1)}" height="${h.toFixed(1)}" fill="${m.color}" data-day="${d.day}" data-method="${m.key}" data-count="${n}"><title>${d.day} ${esc(m.label)}: ${n}</title></rect>`,
      );
    }
    if (i % 5 === 0 || i === days.length - 1) {
      parts.push(`<text x="${(x + barW / 2).toFixed(1)}" y="${H - 10}" text-anchor="middle" font-size="10" fill="#374151">${d.day.slice(5)}</text>`);
    }
  });
  const total = days.reduce((a, d) => a + d.counts.sasl + d.counts.pop + d.counts.mynetworks, 0);
  return `<svg id="relay-chart" xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="Relayed recipients per day by method, last ${days.length} days: ${total} in all">${parts.join('')}</svg>`;
}

export function statusPage(d: StatusData): string {
  const legend = METHODS.map((m) => `<span class="key"><span class="sw" style="background:${m.color}"></span>${esc(m.label)}</span>`).join(' ');
  const totals = METHODS.map((m) => `${esc(m.label)}: ${d.days.reduce((a, x) => a + x.counts[m.key], 0)}`).join(' · ');
  const grantRows = d.grants
    .map((g) => `<tr><td>${esc(g.ip)}</td><td>${esc(g.user ?? '-')}</td><td>${esc(g.service ?? '-')}</td><td>${esc(g.source)}</td><td>${iso(g.lastSeen)}</td><td>${iso(g.expires)}</td><td>${g.count}</td></tr>`)
    .join('');
  const depRows = d.dependents
    .map(
      (p) =>
        `<tr><td>${esc(p.user)}</td><td>${iso(p.lastPop)}</td><td>${p.popCount}</td><td>${esc(p.ips.join(', '))}</td><td>${iso(p.lastSasl)}</td><td>${p.sunset === null ? '-' : `${esc(p.sunset.date)} (${esc(p.sunset.key)})`}</td></tr>`,
    )
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>relaygate status — ${esc(d.hostname)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#111827;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.meta{color:#6b7280}table{border-collapse:collapse;min-width:60%}th,td{border-bottom:1px solid #e5e7eb;padding:4px 10px;text-align:left;font-variant-numeric:tabular-nums}
th{background:#f9fafb}.key{margin-right:14px}.sw{display:inline-block;width:10px;height:10px;margin-right:5px;vertical-align:middle}
.empty{color:#6b7280;font-style:italic}
</style></head>
<body>
<h1>relaygate on ${esc(d.hostname)}</h1>
<div class="meta">version ${esc(d.version)} · ${iso(d.now)} · read-only</div>
<h2 id="grants">Active grants: <span id="grant-count">${d.grantsTotal}</span></h2>
${d.grantsTotal === 0 ? '<p class="empty">no unexpired grants</p>' : `<table><thead><tr><th>client IP</th><th>user</th><th>service</th><th>source</th><th>last login</th><th>expires</th><th>logins</th></tr></thead><tbody>${grantRows}</tbody></table>${d.grantsTotal > d.grants.length ? `<p class="meta">showing the ${d.grants.length} that expire last of ${d.grantsTotal}</p>` : ''}`}
<h2 id="methods">Relaying by method, last ${d.days.length} days</h2>
${d.usageLog ? '' : '<p class="empty">usage_log = false: nothing is recorded</p>'}
<div>${legend}</div>
${chartSvg(d.days)}
<div class="meta">${totals} (relayed recipients)</div>
<h2 id="dependents">Users still on POP-before-SMTP (last 30 days): ${d.dependents.length}</h2>
${d.dependents.length === 0 ? '<p class="empty">nobody relayed on a POP-before-SMTP grant in the last 30 days</p>' : `<table><thead><tr><th>user</th><th>last POP-before-SMTP</th><th>count</th><th>client IPs</th><th>last SMTP AUTH</th><th>sunset</th></tr></thead><tbody>${depRows}</tbody></table>`}
</body></html>
`;
}
