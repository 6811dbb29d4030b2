// Service life under live SMTP load, with a real `relaygate run`: five clients keep relaying over persistent
// connections on a POP-before-SMTP grant while the configuration is replaced with SIGHUP —
//  1. a valid new file that refuses this client (check_client_access before permit_pop_before_smtp): every
//     RCPT is answered either by the old configuration (250) or entirely by the new one (554 with the new
//     text), never anything else; no connection drops; every transaction that starts after the `reloaded`
//     line gets the new answer;
//  2. an invalid file: `reload_refused` names the problem, and the running configuration stays.
// Then /metrics (the [http] listener) counts exactly the decisions and forwarded messages the clients saw,
// and SIGTERM exits 0.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import http from 'node:http';
import { startSink, type Sink } from '../helpers/smtp-sink.ts';
import { SmtpClient } from '../helpers/smtp-client.ts';
import { message } from '../helpers/smtp-gateway.ts';
import { run, pollFor } from '../helpers/proc.ts';
import { Daemon } from '../helpers/daemon.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'src/main.ts');
const TSX = import.meta.resolve('tsx');
const CLIENT = '127.0.0.41';

let dir: string;
let conf: string;
let sink: Sink;
let daemon: Daemon | undefined;

function config(relay: string[]): string {
  return [
    `data_dir = ${JSON.stringify(join(dir, 'data'))}`,
    'mynetworks = ["127.0.0.10/32"]',
    'mydestination = ["local.example"]',
    `relay_restrictions = ${JSON.stringify(relay)}`,
    '[[watch]]',
    `path = ${JSON.stringify(join(dir, 'mail.log'))}`,
    'format = "dovecot"',
    'prefix = "rfc3339"',
    '[[listen]]',
    'address = "127.0.0.1:0"',
    'role = "smtp"',
    '[smtp]',
    'hostname = "gw.test"',
    `relayhost = "127.0.0.1:${sink.port}"`,
    'peername_lookup = false',
    '[http]',
    'listen = "127.0.0.1:0"',
    '',
  ].join('\n');
}

const BASE = ['permit_mynetworks', 'permit_sasl_authenticated', 'permit_pop_before_smtp', 'reject_unauth_destination'];
const BLOCKING = ['permit_mynetworks', 'permit_sasl_authenticated', `check_client_access inline:{ { ${CLIENT} = REJECT blocked since the reload } }`, 'permit_pop_before_smtp', 'reject_unauth_destination'];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rg-reload-'));
  sink = await startSink();
  conf = join(dir, 'relaygate.toml');
  await writeFile(conf, config(BASE));
  // three lines that are not logins: read (lines_total 3), no grant, nothing left unread (lag 0)
  const t = new Date().toISOString();
  await writeFile(
    join(dir, 'mail.log'),
    [
      `${t} mx postfix/smtpd[1]: connect from unknown[192.0.2.9]`,
      `${t} mx dovecot: imap-login: Disconnected: Connection closed (no auth attempts in 0 secs): user=<>, rip=192.0.2.9, lip=192.0.2.1, session=<x>`,
      `${t} mx postfix/smtpd[1]: disconnect from unknown[192.0.2.9]`,
      '',
    ].join('\n'),
  );
});
after(async () => {
  await daemon?.stop();
  await sink?.close();
  await rm(dir, { recursive: true, force: true });
});

function get(port: number, path: string): Promise<string> {
  return new Promise((res, rej) => {
    http.get({ host: '127.0.0.1', port, path, timeout: 10_000 }, (r) => {
      let b = '';
      r.on('data', (d: Buffer) => (b += d));
      r.on('end', () => res(b));
    }).on('error', rej);
  });
}

function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.slice(name.length + 1));
}

test('SIGHUP under load: old or new answers only, no dropped connection; invalid file refused; /metrics counts match', async () => {
  const r = await run(process.execPath, ['--import', TSX, MAIN, 'map', 'add', CLIENT, '--user', 'alice', '-c', conf], { timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);

  daemon = await Daemon.start(conf, dir);
  const lines = daemon.events();
  const smtpPort = await daemon.port('smtp_listening');
  const httpPort = await daemon.port('http_listening');

  // Load: 5 connections, each transaction MAIL/RCPT(/DATA); bounded by count and by a stop flag.
  let stopLoad = false;
  const seen: Array<{ startedAt: number; code: number; text: string }> = [];
  let delivered = 0;
  const errors: string[] = [];
  const worker = async (n: number) => {
    const c = await SmtpClient.connect({ port: smtpPort, localAddress: CLIENT, timeoutMs: 10_000 });
    try {
      assert.equal((await c.cmd('EHLO load.test')).code, 250);
      for (let i = 0; i < 2000 && !stopLoad; i++) {
        const startedAt = lines.length;
        assert.equal((await c.cmd(`MAIL FROM:<alice@local.example>`)).code, 250);
        const rc = await c.cmd(`RCPT TO:<bob${n}@remote.example>`);
        seen.push({ startedAt, code: rc.code, text: rc.text });
        if (rc.code === 250) {
          assert.equal((await c.cmd('DATA')).code, 354);
          c.write(`${message(`m${n}-${i}`)}.\r\n`);
          const d = await c.read();
          assert.equal(d.code, 250, d.raw);
          delivered++;
        } else {
          assert.equal((await c.cmd('RSET')).code, 250);
        }
      }
      await c.quit();
    } catch (err) {
      errors.push(`worker ${n}: ${(err as Error).message}`);
    }
  };
  const load = Promise.all([0, 1, 2, 3, 4].map(worker));

  await pollFor(() => (seen.length >= 25 ? true : undefined), 20_000);
  await writeFile(conf, config(BLOCKING));
  daemon.child.kill('SIGHUP');
  const reloadedAt = await pollFor(() => {
    const i = lines.findIndex((l) => l.event === 'reloaded');
    return i === -1 ? undefined : i;
  }, 20_000);
  assert.ok(reloadedAt !== undefined, `reloaded line: ${JSON.stringify(lines.filter((l) => String(l.event).startsWith('reload') || l.level === 'error'))}`);
  const countAtReload = seen.length;
  await pollFor(() => (seen.length >= countAtReload + 25 ? true : undefined), 20_000);

  // an invalid file: refused, the running (blocking) configuration stays
  await writeFile(conf, config([...BLOCKING.slice(0, -1), 'reject_unauth_destinaton']));
  daemon.child.kill('SIGHUP');
  const refused = await pollFor(() => lines.find((l) => l.event === 'reload_refused'), 20_000);
  assert.ok(refused, 'reload_refused line');
  assert.match(String(refused.msg), /reject_unauth_destinaton.*did you mean "reject_unauth_destination"/);
  const countAtRefusal = seen.length;
  await pollFor(() => (seen.length >= countAtRefusal + 25 ? true : undefined), 20_000);
  stopLoad = true;
  await load;

  assert.deepEqual(errors, [], 'no connection dropped, no unexpected reply');
  const old = seen.filter((s) => s.code === 250);
  const blocked = seen.filter((s) => s.code === 554);
  assert.equal(old.length + blocked.length, seen.length, `only 250 or 554: ${JSON.stringify(seen.filter((s) => s.code !== 250 && s.code !== 554).slice(0, 3))}`);
  for (const b of blocked) assert.match(b.text, /blocked since the reload/);
  assert.ok(old.length >= 25 && blocked.length >= 50, `old ${old.length}, new ${blocked.length}`);
  const startedAfter = seen.filter((s) => s.startedAt > reloadedAt!);
  assert.ok(startedAfter.length > 0);
  assert.ok(startedAfter.every((s) => s.code === 554), 'every transaction after the reloaded line gets the new answer');
  assert.equal(sink.messages.length, delivered);

  const m = await get(httpPort, '/metrics');
  assert.equal(metric(m, 'relaygate_decisions_total{stage="rcpt",restriction="permit_pop_before_smtp",result="permit"}'), old.length);
  assert.equal(metric(m, 'relaygate_decisions_total{stage="rcpt",restriction="check_client_access",result="reject"}'), blocked.length);
  assert.equal(metric(m, 'relaygate_upstream_messages_total{result="sent"}'), delivered);
  assert.equal(metric(m, 'relaygate_map_grants'), 1);
  const src = `{source="${join(dir, 'mail.log')}",format="dovecot"}`;
  assert.equal(metric(m, `relaygate_source_lines_total${src}`), 3);
  assert.equal(metric(m, `relaygate_source_grants_total${src}`), 0);
  assert.equal(metric(m, `relaygate_source_lag_bytes${src}`), 0);
  assert.match(m, new RegExp(`relaygate_source_lag_bytes\\{source="${join(dir, 'mail.log').replace(/[.]/g, '\\.')}",format="dovecot"\\} 0`));
  const health = JSON.parse(await get(httpPort, '/healthz')) as { status: string };
  assert.equal(health.status, 'ok');

  assert.equal(await daemon.stop(20_000), 0, daemon.out.slice(-2000));
});

test('/healthz: 503 naming the source while its log file is missing, 200 once it appears', async () => {
  const sub = join(dir, 'health');
  await import('node:fs/promises').then((fs) => fs.mkdir(sub, { recursive: true }));
  const log = join(sub, 'dovecot.log');
  const file = join(sub, 'relaygate.toml');
  await writeFile(file, [`data_dir = ${JSON.stringify(join(sub, 'data'))}`, '[[watch]]', `path = ${JSON.stringify(log)}`, 'format = "dovecot"', 'prefix = "logpath"', '[http]', 'listen = "127.0.0.1:0"', ''].join('\n'));
  const d = await Daemon.start(file, sub);
  try {
    const port = await d.port('http_listening');
    const health = async () => {
      const body = await new Promise<{ status: number; body: string }>((res, rej) => {
        http.get({ host: '127.0.0.1', port, path: '/healthz', timeout: 10_000 }, (r) => {
          let b = '';
          r.on('data', (c: Buffer) => (b += c));
          r.on('end', () => res({ status: r.statusCode!, body: b }));
        }).on('error', rej);
      });
      return { status: body.status, json: JSON.parse(body.body) as { status: string; checks: Record<string, { ok: boolean; detail?: string }> } };
    };
    const missing = await health();
    assert.equal(missing.status, 503);
    assert.equal(missing.json.checks.sources?.ok, false);
    assert.match(missing.json.checks.sources?.detail ?? '', /no file at .*dovecot\.log/);
    assert.equal(missing.json.checks.store?.ok, true);
    assert.equal(missing.json.checks.upstream, undefined, 'no SMTP gateway, no upstream check');
    await writeFile(log, '');
    const ok = await pollFor(async () => ((await health()).status === 200 ? true : undefined), 15_000, 200);
    assert.equal(ok, true, 'healthy once the file exists');
  } finally {
    assert.equal(await d.stop(), 0);
  }
});
