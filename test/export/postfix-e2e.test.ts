// End to end with a real Postfix 3.7 (test/helpers/postfix.ts: a private instance on a loopback port) reading
// the table relaygate exports: `smtpd_relay_restrictions = permit_mynetworks, check_client_access
// lmdb:/path/pbs, reject_unauth_destination`. The REAL daemon (`relaygate run -c FILE`, a child process)
// follows a Dovecot-format log file; swaks is the SMTP client, binding distinct 127.0.0.x source addresses;
// Postfix relays to a sink (test/helpers/smtp-sink.ts).
//
//   1. a login line for 127.0.0.21 → its key appears (value = "expiry": all digits, which Postfix takes as
//      OK) → swaks from 127.0.0.21 to x@remote.example is relayed; 127.0.0.22 gets 554 5.7.1 Relay access
//      denied; after the short grace (5 s) the key is deleted and 127.0.0.21 is denied again.
//   2. a login for 127.0.0.23 → relaygate stopped: the table stays as last written and Postfix keeps relaying
//      for 127.0.0.23 without relaygate; the grant expires while relaygate is down (the stale entry stays:
//      the documented behaviour) → relaygate restarted → the rebuilt table no longer has it → denied.
//
// Needs root, Debian's postfix + postfix-lmdb and swaks (CI installs them in .ci/run): missing ones FAIL.
// Loopback only, IP literals only; every wait is bounded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startPostfix, requirePostfix, type PrivatePostfix } from '../helpers/postfix.ts';
import { startSink, type Sink } from '../helpers/smtp-sink.ts';
import { swaks } from '../helpers/smtp-swaks.ts';
import { pollFor } from '../helpers/proc.ts';
import { Daemon } from '../helpers/daemon.ts';
import { makeConfigDir, query, requirePostmap } from './postfix-tables.ts';

const GRACE_S = 5;
let dir = '';
let cfgDir = '';
let table = '';
let logFile = '';
let config = '';
let sink: Sink | undefined;
let pf: PrivatePostfix | undefined;
const daemons: Daemon[] = [];

const iso = (ms: number) => new Date(ms).toISOString().replace('Z', '+00:00');
const loginLine = (ip: string, user: string, at = Date.now()) =>
  `${iso(at)} mx dovecot: pop3-login: Login: user=<${user}>, method=PLAIN, rip=${ip}, lip=127.0.0.1, mpid=4711, session=<AbCdEf${ip.replace(/\./g, '')}>\n`;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rg-export-e2e-'));
  cfgDir = await makeConfigDir(dir);
  await requirePostmap(cfgDir, ['lmdb']);
  await requirePostfix();
  await mkdir(join(dir, 'tables'));
  table = `lmdb:${join(dir, 'tables', 'pbs')}`;
  logFile = join(dir, 'mail.log');
  await writeFile(logFile, '');
  config = join(dir, 'relaygate.toml');
  await writeFile(
    config,
    [
      `data_dir = "${join(dir, 'data')}"`,
      `grace = "${GRACE_S}s"`,
      'sweep_interval = "1s"',
      'mynetworks = ["127.0.0.1/32"]', // 127.0.0.21-23 are strangers that must earn a grant
      '',
      '[export]',
      `table = "${table}"`,
      'value = "expiry"',
      `config_directory = "${cfgDir}"`,
      '',
      '[[watch]]',
      `path = "${logFile}"`,
      'format = "dovecot"',
      'prefix = "rfc3339"',
      '',
    ].join('\n'),
  );
  // relaygate first: its start-up builds the table file, which smtpd opens at its first connection.
  daemons.push(await Daemon.start(config, dir));
  sink = await startSink();
  pf = await startPostfix({
    relayPort: sink.port,
    main: [`smtpd_relay_restrictions = permit_mynetworks, check_client_access ${table}, reject_unauth_destination`],
  });
});

after(async () => {
  for (const d of daemons) await d.stop();
  await pf?.stop();
  await sink?.close();
  await rm(dir, { recursive: true, force: true });
});

async function relayFrom(ip: string): Promise<string> {
  const r = await swaks({ port: pf!.port, localAddress: ip, from: `u@${ip}.test`, to: 'x@remote.example' });
  return r.transcript;
}

const ACCEPTED = /<- {2}250 2\.0\.0 Ok: queued as/;
const DENIED = /<\*\* 554 5\.7\.1 <x@remote\.example>: Relay access denied/;

async function tableHas(ip: string, want: boolean, timeoutMs: number): Promise<string | undefined> {
  let last: string | undefined;
  const ok = await pollFor(async () => {
    last = await query(table, ip, cfgDir);
    return (last !== undefined) === want ? true : undefined;
  }, timeoutMs, 25);
  assert.equal(ok, true, `${ip} should ${want ? '' : 'no longer '}be in ${table} within ${timeoutMs} ms (value: ${last})`);
  return last;
}

test('a POP login lets 127.0.0.21 relay through Postfix via the exported lmdb table, until its grace ends', async () => {
  const at = Date.now();
  await appendFile(logFile, loginLine('127.0.0.21', 'alice', at));
  const value = await tableHas('127.0.0.21', true, 3000);
  assert.match(value!, /^\d+$/, 'value = "expiry": Unix seconds');
  assert.equal(Number(value), Math.ceil((Math.floor(at) + GRACE_S * 1000) / 1000), 'the grant expiry, from the line time');

  assert.match(await relayFrom('127.0.0.21'), ACCEPTED, 'an all-numerical value is OK to Postfix');
  const [msg] = await sink!.waitFor(1, 10_000);
  assert.deepEqual(msg?.to, ['x@remote.example']);
  assert.match(await relayFrom('127.0.0.22'), DENIED);
  await pf!.waitForLog(/NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.22\]: 554 5\.7\.1/, 5000);

  // the grant expires: the running daemon deletes the key (expiry timer), and Postfix refuses again
  await tableHas('127.0.0.21', false, GRACE_S * 1000 + 3000);
  assert.ok(Date.now() >= at + GRACE_S * 1000 - 1000, 'not deleted long before the expiry');
  assert.match(await relayFrom('127.0.0.21'), DENIED);
});

test('relaygate stopped: Postfix relays from the table as last written; restart rebuilds it without the expired grant', async () => {
  const at = Date.now();
  await appendFile(logFile, loginLine('127.0.0.23', 'bob', at));
  await tableHas('127.0.0.23', true, 3000);
  assert.equal(await daemons[0]!.stop(), 0);
  assert.ok(daemons[0]!.events().some((e) => e.event === 'export_stopped' && e.pending === 0));

  // no relaygate process at all: Postfix only reads the table
  assert.match(await relayFrom('127.0.0.23'), ACCEPTED);
  await sink!.waitFor(2, 10_000);

  // the grant expires while relaygate is down: nobody removes the key (documented), until the next start
  const wait = at + GRACE_S * 1000 + 300 - Date.now();
  if (wait > 0) await sleep(wait);
  assert.ok((await query(table, '127.0.0.23', cfgDir)) !== undefined, 'the table is as last written while relaygate is stopped');

  const restarted = await Daemon.start(config, dir);
  daemons.push(restarted);
  assert.ok(restarted.events().some((e) => e.event === 'export_rebuilt' && e.entries === 0), 'rebuilt from the map: no active grant');
  assert.equal(await query(table, '127.0.0.23', cfgDir), undefined);
  assert.match(await relayFrom('127.0.0.23'), DENIED);
  assert.equal(await restarted.stop(), 0);
});
