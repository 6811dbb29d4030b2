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
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import http from 'node:http';
import { startSink, type Sink } from '../helpers/smtp-sink.ts';
import { SmtpClient } from '../helpers/smtp-client.ts';
import { message } from '../helpers/smtp-gateway.ts';
import { run, pollFor, waitExit } from '../helpers/proc.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'src/main.ts');
const TSX = import.meta.resolve('tsx');
const CLIENT = '127.0.0.41';

let dir: string;
let conf: string;
let sink: Sink;
let daemon: ChildProcess | undefined;
const lines: Array<Record<string, unknown>> = [];

function config(relay: string[]): string {
  return [
    `data_dir = ${JSON.stringify(join(dir, 'data'))}`,
    'mynetworks = ["127.0.0.10/32"]',
    'mydestination = ["local.example"]',
    `relay_restrictions = ${JSON.stringify(relay)}`,
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
});
after(async () => {
  if (daemon && daemon.exitCode === null) daemon.kill('SIGKILL');
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

  daemon = spawn(process.execPath, ['--import', TSX, MAIN, 'run', '-c', conf], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  daemon.stderr!.on('data', (d: Buffer) => (stderr += d));
  let buf = '';
  daemon.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const l = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        lines.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        // not JSON
      }
    }
  });
  const smtpPort = await pollFor(() => (lines.find((l) => l.event === 'smtp_listening')?.listeners as Array<{ port: number }> | undefined)?.[0]?.port, 20_000);
  const httpPort = await pollFor(() => lines.find((l) => l.event === 'http_listening')?.port as number | undefined, 20_000);
  assert.ok(smtpPort && httpPort, `daemon did not start: ${stderr}`);

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
  daemon.kill('SIGHUP');
  const reloadedAt = await pollFor(() => {
    const i = lines.findIndex((l) => l.event === 'reloaded');
    return i === -1 ? undefined : i;
  }, 20_000);
  assert.ok(reloadedAt !== undefined, `reloaded line: ${JSON.stringify(lines.filter((l) => String(l.event).startsWith('reload') || l.level === 'error'))}`);
  const countAtReload = seen.length;
  await pollFor(() => (seen.length >= countAtReload + 25 ? true : undefined), 20_000);

  // an invalid file: refused, the running (blocking) configuration stays
  await writeFile(conf, config([...BLOCKING.slice(0, -1), 'reject_unauth_destinaton']));
  daemon.kill('SIGHUP');
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
  const health = JSON.parse(await get(httpPort, '/healthz')) as { status: string };
  assert.equal(health.status, 'ok');

  daemon.kill('SIGTERM');
  assert.ok(await waitExit(daemon, 20_000));
  assert.equal(daemon.exitCode, 0, stderr);
});
