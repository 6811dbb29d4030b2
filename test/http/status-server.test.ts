// The operations HTTP listener with a real LMDB access map and usage log: /metrics parses as Prometheus text
// and its counts match what the test did (decisions through a real engine), /healthz turns 503 when the
// upstream is gone, clients outside [http] allow get 403, and the status page renders in a real headless
// Chromium (Debian `chromium`, driven by playwright-core) with the chart drawn from the data: bars for each
// method on the right days, the users still on POP-before-SMTP, the grants — and a screenshot that is not blank.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import { chromium, type Browser } from 'playwright-core';
import { openAccessMap, type AccessMap } from '../../src/store/index.ts';
import { CidrSet } from '../../src/net/index.ts';
import { silentLogger } from '../../src/log/logger.ts';
import { createEngine } from '../../src/engine/index.ts';
import { SunsetPolicy } from '../../src/engine/sunset.ts';
import { UsageLog } from '../../src/usage/usage-log.ts';
import { Metrics } from '../../src/metrics/metrics.ts';
import { startStatusServer, type StatusServer } from '../../src/http/status-server.ts';
import { startSink, type Sink } from '../helpers/smtp-sink.ts';

const CHROMIUM = '/usr/bin/chromium';
const DAY = 86_400_000;

function get(port: number, path: string, localAddress = '127.0.0.1'): Promise<{ status: number; type: string; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, localAddress, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body, headers: res.headers }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** Parses Prometheus text format into name{labels} → value; throws on a malformed line. */
function parseProm(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.eE+-]+|[Nn]a[Nn]|[+-]Inf)$/.exec(line);
    if (!m) throw new Error(`not Prometheus text: ${JSON.stringify(line)}`);
    out.set(`${m[1]}${m[2] ?? ''}`, Number(m[3]));
  }
  return out;
}

describe('operations HTTP listener', () => {
  let dir: string;
  let map: AccessMap;
  let usage: UsageLog;
  let server: StatusServer;
  let sink: Sink;
  let sinkPort: number;
  const metrics = new Metrics();
  const now = Date.now();
  const clock = () => now;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rg-http-'));
    sink = await startSink();
    sinkPort = sink.port;
    map = await openAccessMap({ type: 'lmdb', path: join(dir, 'map'), grace: 1800, mynetworks: new CidrSet(['127.0.0.10/32']), neverAuthorize: new CidrSet(['0.0.0.0/8']), clock, logger: silentLogger() });
    usage = await UsageLog.open(join(dir, 'usage'), { clock, logger: silentLogger(), flushMs: 0 });
    await map.recordMany([
      { ip: '192.0.2.7', user: 'alice', service: 'pop3', source: 'dovecot' },
      { ip: '192.0.2.8', user: '<b>mallory</b>', service: 'imap', source: 'dovecot' },
    ]);
    // history: POP relaying fading out, SASL growing, over the last 30 days
    for (let i = 0; i < 30; i++) {
      const at = now - (29 - i) * DAY;
      for (let k = 0; k < 30 - i; k++) usage.note({ method: 'pop', user: k % 2 ? 'alice' : 'carol', ip: '192.0.2.7', at });
      for (let k = 0; k < i; k++) usage.note({ method: 'sasl', user: 'dave', ip: '198.51.100.4', at });
      if (i % 3 === 0) usage.note({ method: 'mynetworks', user: '<app@example.com>', ip: '127.0.0.10', at });
    }
    await usage.flush();
    server = await startStatusServer({
      host: '127.0.0.1',
      port: 0,
      allow: new CidrSet(['127.0.0.1/32']),
      map,
      usage,
      sunset: new SunsetPolicy({ entries: { alice: '2027-03-01' } }),
      clock,
      logger: silentLogger(),
      hostname: 'mx.test',
      version: '0.1.0',
      sources: () => [{ name: '/var/log/mail.log', ok: true }],
      upstream: { host: '127.0.0.1', port: sinkPort },
      metrics,
    });
  });
  after(async () => {
    await server?.close();
    await sink?.close();
    await usage?.close();
    await map?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('/metrics: Prometheus text whose decision and source counts match what happened', async () => {
    const engine = await createEngine({
      relayRestrictions: ['permit_mynetworks', 'permit_sasl_authenticated', 'permit_pop_before_smtp', 'reject_unauth_destination'],
      senderRestrictions: [],
      mynetworks: new CidrSet(['127.0.0.10/32']),
      mydestination: ['example.com'],
      relayDomains: [],
      senderLoginMaps: [],
      grants: map,
      clock,
      logger: silentLogger(),
    });
    const before = parseProm((await get(server.port, '/metrics')).body);
    const key = (r: string, res: string) => `relaygate_decisions_total{stage="rcpt",restriction="${r}",result="${res}"}`;
    // the engine counts into the process-wide metrics; this server shows a private set: count through it too
    const { metrics: global } = await import('../../src/metrics/metrics.ts');
    const g0 = parseProm(await global.registry.metrics());
    for (let i = 0; i < 3; i++) await engine.decide({ stage: 'rcpt', clientIp: '192.0.2.7', recipient: 'x@remote.example' });
    for (let i = 0; i < 2; i++) await engine.decide({ stage: 'rcpt', clientIp: '198.51.100.9', recipient: 'x@remote.example' });
    const g1 = parseProm(await global.registry.metrics());
    assert.equal((g1.get(key('permit_pop_before_smtp', 'permit')) ?? 0) - (g0.get(key('permit_pop_before_smtp', 'permit')) ?? 0), 3);
    assert.equal((g1.get(key('reject_unauth_destination', 'reject')) ?? 0) - (g0.get(key('reject_unauth_destination', 'reject')) ?? 0), 2);
    await engine.close();

    metrics.addSources(() => [{ source: '/var/log/mail.log', format: 'dovecot', lines: 1200, logins: 60, grants: 58, lagBytes: 0 }]);
    metrics.setMapSize(async () => (await map.stats(now)).active);
    const r = await get(server.port, '/metrics');
    assert.equal(r.status, 200);
    assert.match(r.type, /^text\/plain; version=0\.0\.4/);
    const m = parseProm(r.body);
    assert.equal(m.get('relaygate_source_lines_total{source="/var/log/mail.log",format="dovecot"}'), 1200);
    assert.equal(m.get('relaygate_source_grants_total{source="/var/log/mail.log",format="dovecot"}'), 58);
    assert.equal(m.get('relaygate_map_grants'), 2);
    assert.ok(m.has('relaygate_process_resident_memory_bytes'));
    assert.equal(before.has('relaygate_map_grants'), true);
  });

  test('/healthz: 200 with store, sources and upstream ok; 503 naming the upstream when it is gone', async () => {
    const ok = await get(server.port, '/healthz');
    assert.equal(ok.status, 200, ok.body);
    const j = JSON.parse(ok.body) as { status: string; checks: Record<string, { ok: boolean; grants?: number; detail?: string }> };
    assert.equal(j.status, 'ok');
    assert.equal(j.checks.store?.grants, 2);
    assert.equal(j.checks.upstream?.ok, true);
    await sink.close();
    // a second listener whose probe cache is cold
    const s2 = await startStatusServer({
      host: '127.0.0.1', port: 0, allow: new CidrSet(['127.0.0.0/8']), map, usage, sunset: undefined, clock, logger: silentLogger(),
      hostname: 'mx.test', version: '0.1.0', sources: () => [{ name: 'journald:dovecot.service', ok: false, detail: 'journalctl exited 1' }], upstream: { host: '127.0.0.1', port: sinkPort }, metrics,
    });
    try {
      const bad = await get(s2.port, '/healthz');
      assert.equal(bad.status, 503);
      const b = JSON.parse(bad.body) as { status: string; checks: Record<string, { ok: boolean; detail?: string }> };
      assert.equal(b.status, 'fail');
      assert.equal(b.checks.upstream?.ok, false);
      assert.match(b.checks.upstream?.detail ?? '', /ECONNREFUSED|closed/);
      assert.match(b.checks.sources?.detail ?? '', /journalctl exited 1/);
      assert.equal(b.checks.store?.ok, true);
    } finally {
      await s2.close();
    }
  });

  test('clients outside [http] allow get 403; only GET/HEAD; unknown paths 404', async () => {
    const r = await get(server.port, '/metrics', '127.0.0.2');
    assert.equal(r.status, 403);
    assert.doesNotMatch(r.body, /relaygate_/);
    assert.equal((await get(server.port, '/nope')).status, 404);
    const post = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: server.port, path: '/', method: 'POST' }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      req.end('x');
    });
    assert.equal(post, 405);
  });

  test('status page in headless Chromium: chart bars from the data, POP users, escaped names, a non-blank screenshot', async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: apt-get install -y chromium (CI installs it)`);
    const page0 = await get(server.port, '/');
    assert.equal(page0.status, 200);
    assert.match(String(page0.headers['content-security-policy']), /default-src 'none'/);
    assert.doesNotMatch(page0.body, /<b>mallory<\/b>/, 'user names are escaped');
    assert.match(page0.body, /&lt;b&gt;mallory&lt;\/b&gt;/);

    let browser: Browser | undefined;
    try {
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
        timeout: 60_000,
      });
      const page = await browser.newPage({ viewport: { width: 900, height: 1000 } });
      const resp = await page.goto(`http://127.0.0.1:${server.port}/`, { timeout: 30_000 });
      assert.equal(resp?.status(), 200);
      assert.equal(await page.title(), 'relaygate status — mx.test');
      assert.equal(await page.textContent('#grant-count'), '2');
      const bars = await page.$$eval('#relay-chart rect.bar', (els) =>
        els.map((e) => ({ day: e.getAttribute('data-day'), method: e.getAttribute('data-method'), count: Number(e.getAttribute('data-count')), h: e.getBoundingClientRect().height })),
      );
      const pop = bars.filter((b) => b.method === 'pop');
      const sasl = bars.filter((b) => b.method === 'sasl');
      assert.equal(pop.length, 30, 'a POP bar on each of the 30 days');
      assert.equal(sasl.length, 29, 'SASL from the second day on');
      assert.equal(bars.filter((b) => b.method === 'mynetworks').length, 10);
      assert.equal(pop[0]!.count, 30);
      assert.equal(pop.at(-1)!.count, 1);
      assert.ok(pop[0]!.h > pop.at(-1)!.h * 10, 'rendered heights follow the counts');
      assert.ok(bars.every((b) => b.h > 0));
      const deps = await page.$$eval('#dependents + table tbody tr', (rows) => rows.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent)));
      assert.deepEqual(deps.map((r) => r[0]), ['carol', 'alice'], 'most recent POP use first: carol relayed today, alice yesterday');
      assert.match(deps[1]![5] ?? '', /2027-03-01 \(alice\)/);
      assert.equal(deps[0]![5], '-');
      assert.equal(await page.locator('script').count(), 0);
      const png = await page.locator('#relay-chart').screenshot();
      await import('node:fs/promises').then((fs) => fs.writeFile(process.env.RG_SCREENSHOT ?? join(dir, 'chart.png'), png));
      // the chart area is not blank: orange (POP) and blue (SASL) pixels are both present
      // Counted inside Chromium (it decodes PNG; Node has no decoder here). Browser code as text: the test
      // is type-checked without DOM types.
      const shot = (await page.evaluate(`(async () => {
        const img = new Image();
        img.src = 'data:image/png;base64,${png.toString('base64')}';
        await img.decode();
        const c = new OffscreenCanvas(img.width, img.height);
        const g = c.getContext('2d');
        g.drawImage(img, 0, 0);
        const d = g.getImageData(0, 0, img.width, img.height).data;
        let orange = 0;
        let blue = 0;
        for (let i = 0; i < d.length; i += 4) {
          if (d[i] > 200 && d[i + 1] > 70 && d[i + 1] < 110 && d[i + 2] < 40) orange++;
          if (d[i] < 60 && d[i + 1] > 80 && d[i + 1] < 120 && d[i + 2] > 200) blue++;
        }
        return { orange, blue, w: img.width, h: img.height };
      })()`)) as { orange: number; blue: number; w: number; h: number };
      assert.ok(shot.w >= 700 && shot.h >= 200, JSON.stringify(shot));
      assert.ok(shot.orange > 500, `orange pixels: ${shot.orange}`);
      assert.ok(shot.blue > 500, `blue pixels: ${shot.blue}`);
    } finally {
      await browser?.close();
    }
  });
});
