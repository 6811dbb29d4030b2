// End to end with a real Postfix 3.7 (test/helpers/postfix.ts: private instances on loopback ports) asking the
// REAL relaygate daemon (`relaygate run -c FILE`, a child process) through the policy service and through
// socketmap, with swaks as the SMTP client from distinct 127.x addresses and test/helpers/smtp-sink.ts as
// Postfix's relayhost. Postfix's SASL is a real Dovecot auth service (test/auth/dovecot-auth-server.ts).
//
// The script, for both modes:
//   a Dovecot-format login line for 127.0.0.21 appended to the watched log → swaks from 127.0.0.21 through
//   Postfix to x@remote.example is accepted and relayed to the sink; 127.0.0.22 gets `554 5.7.1 ... Relay
//   access denied`; after the grant expires (grace 6 s) 127.0.0.21 is denied again; relaygate stopped →
//   policy: Postfix's smtpd_policy_service_default_action (here DEFER → 450 4.7.1), socketmap: Postfix's
//   temporary lookup failure (451 4.3.0).
// Plus, through the policy service: sender-login checks for a SASL user (bob may not send as alice) and for a
// POP-before-SMTP user (the grant's user), and the DATA-time trust header on the relayed message; through
// socketmap: Postfix's own reject_authenticated_sender_login_mismatch reading relaygate's sender_login map.
//
// Needs root, Debian's postfix, swaks and dovecot-core (CI installs them in .ci/run): missing ones FAIL.
// Network: loopback only, IP literals only; every wait is bounded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startPostfix, type PrivatePostfix } from '../../helpers/postfix.ts';
import { startSink, type Sink } from '../../helpers/smtp-sink.ts';
import { swaks } from '../../helpers/smtp-swaks.ts';
import { pollFor, waitExit } from '../../helpers/proc.ts';
import { startAuthDovecot, type AuthDovecot } from '../../auth/dovecot-auth-server.ts';
import { netstring } from '../../../src/frontends/postfix/socketmap.ts';
import { RawClient } from './wire.ts';

const ROOT = resolve(import.meta.dirname, '../../..');
const MAIN = join(ROOT, 'src/main.ts');
const TSX = import.meta.resolve('tsx');
const GRACE_S = 6;

let dir = '';
let maillog = '';
let sink: Sink | undefined;
let daemon: ChildProcess | undefined;
let out = '';
let pfPolicy: PrivatePostfix | undefined;
let pfSocketmap: PrivatePostfix | undefined;
let auth: AuthDovecot | undefined;
let policyPort = 0;
let socketmapPort = 0;

function events(): Array<Record<string, unknown>> {
  const ev: Array<Record<string, unknown>> = [];
  for (const l of out.split('\n')) {
    if (!l.startsWith('{')) continue;
    try {
      ev.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      /* partial line */
    }
  }
  return ev;
}

function diagnostics(): string {
  return `\n--- relaygate:\n${out.slice(-2500)}`;
}

async function grantAnswer(ip: string): Promise<string> {
  const c = await RawClient.connect({ port: socketmapPort });
  try {
    c.write(netstring(`grant ${ip}`));
    return await c.netstring();
  } finally {
    c.close();
  }
}

/** A Dovecot login line as rsyslog writes it on Debian 12 (RFC 3339 stamp), dated now. */
function loginLine(user: string, ip: string): string {
  return `${new Date().toISOString()} mx dovecot: pop3-login: Login: user=<${user}>, method=PLAIN, rip=${ip}, lip=127.0.0.1, mpid=4242, session=<e2e${Date.now()}>\n`;
}

function portOf(event: string): number {
  const ev = events().find((e) => e['event'] === event);
  const m = /:(\d+)$/.exec(String(ev?.['address'] ?? ''));
  if (!m) throw new Error(`no ${event} line${diagnostics()}`);
  return Number(m[1]);
}

before(async () => {
  if (process.getuid?.() !== 0) throw new Error('the Postfix end-to-end test needs root (Postfix master and Dovecot run as root)');
  dir = await mkdtemp(join(tmpdir(), 'rg-pf-e2e-'));
  maillog = join(dir, 'mail.log');
  await writeFile(maillog, '');
  const config = join(dir, 'relaygate.toml');
  await writeFile(
    config,
    [
      `data_dir = ${JSON.stringify(join(dir, 'rg'))}`,
      `grace = "${GRACE_S}s"`,
      'sweep_interval = "1s"',
      'mynetworks = ["127.0.0.1/32"]',
      'sender_login_maps = ["inline:{ alice@example.com=alice, bob@example.com=bob }"]',
      '[[watch]]',
      `path = ${JSON.stringify(maillog)}`,
      'format = "dovecot"',
      'prefix = "rfc3339"',
      '[policy]',
      'listen = "127.0.0.1:0"',
      'restrictions = ["reject_sender_login_mismatch", "permit_pop_before_smtp"]',
      'prepend_header = "X-Relaygate-Trust"',
      '[socketmap]',
      'listen = "127.0.0.1:0"',
    ].join('\n') + '\n',
  );
  sink = await startSink();
  daemon = spawn(process.execPath, ['--import', TSX, MAIN, 'run', '-c', config], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  daemon.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  daemon.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const up = await pollFor(() => (daemon!.exitCode !== null ? false : events().some((e) => e['event'] === 'components') ? true : undefined), 30_000, 50);
  if (up !== true) throw new Error(`relaygate did not start${diagnostics()}`);
  policyPort = portOf('policy_listening');
  socketmapPort = portOf('socketmap_listening');

  auth = await startAuthDovecot({ users: [{ user: 'alice', pass: 'alice-pw' }, { user: 'bob', pass: 'bob-pw' }] });
  const policy = `check_policy_service inet:127.0.0.1:${policyPort}`;
  [pfPolicy, pfSocketmap] = await Promise.all([
    startPostfix({
      relayPort: sink.port,
      main: [
        'smtpd_sasl_auth_enable = yes',
        'smtpd_sasl_type = dovecot',
        `smtpd_sasl_path = inet:${auth.tcp}`,
        // contrib/postfix/main.cf.policy: the placement that works
        `smtpd_sender_restrictions = ${policy}`,
        `smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, ${policy}, reject_unauth_destination`,
        `smtpd_data_restrictions = ${policy}`,
        'smtpd_policy_service_default_action = DEFER relaygate unavailable',
      ],
    }),
    startPostfix({
      relayPort: sink.port,
      main: [
        'smtpd_sasl_auth_enable = yes',
        'smtpd_sasl_type = dovecot',
        `smtpd_sasl_path = inet:${auth.tcp}`,
        // contrib/postfix/socketmap.main.cf: grants for relaying, relaygate's sender_login_maps for Postfix's own check
        `smtpd_sender_login_maps = socketmap:inet:127.0.0.1:${socketmapPort}:sender_login`,
        'smtpd_sender_restrictions = reject_authenticated_sender_login_mismatch',
        `smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, check_client_access socketmap:inet:127.0.0.1:${socketmapPort}:grant, reject_unauth_destination`,
      ],
    }),
  ]);
});

after(async () => {
  if (daemon && daemon.exitCode === null) {
    daemon.kill('SIGKILL');
    await waitExit(daemon, 5000);
  }
  await pfPolicy?.stop();
  await pfSocketmap?.stop();
  await auth?.stop();
  await sink?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/**
 * Polls the sink (Sink.waitFor drops a waiter whose count was not reached yet at the first arrival, so it can
 * miss the second of two messages that arrive one after the other).
 */
async function waitMessages(n: number, timeoutMs = 15_000) {
  const ok = await pollFor(() => (sink!.messages.length >= n ? true : undefined), timeoutMs, 50);
  if (ok !== true) assert.fail(`sink: ${sink!.messages.length} of ${n} message(s) after ${timeoutMs} ms\n${(await pfPolicy!.readLog()).slice(-1500)}\n${(await pfSocketmap!.readLog()).slice(-1500)}`);
  return sink!.messages;
}

function rejectLine(transcript: string): string {
  return transcript.split('\n').find((l) => l.startsWith('<** ')) ?? '(no rejection)';
}

test('policy and socketmap: a POP login lets 127.0.0.21 relay through Postfix until the grant expires; strangers never', async () => {
  const pfP = pfPolicy!;
  const pfS = pfSocketmap!;
  await appendFile(maillog, loginLine('alice', '127.0.0.21'));
  const granted = await pollFor(async () => ((await grantAnswer('127.0.0.21')) === 'OK OK' ? true : undefined), 5000, 50);
  assert.equal(granted, true, `the login line did not become a grant${diagnostics()}`);
  const loggedAt = Date.now();

  // granted client, policy mode: accepted, relayed to the sink, with the trust header prepended at DATA
  const a = await swaks({ port: pfP.port, localAddress: '127.0.0.21', from: 'alice@example.com', to: 'x@remote.example', args: ['--header', 'Subject: via policy'] });
  const late = () => (Date.now() - loggedAt > GRACE_S * 1000 ? ` (NOTE: ${Date.now() - loggedAt} ms since the login, longer than the ${GRACE_S} s grace: the machine is too slow for this test)` : '');
  assert.match(a.transcript, /<- {2}250 2\.0\.0 Ok: queued as/, `policy mode, 127.0.0.21${late()}:\n${a.transcript}\n${(await pfP.readLog()).slice(-2000)}${diagnostics()}`);
  // socketmap mode
  const b = await swaks({ port: pfS.port, localAddress: '127.0.0.21', from: 'alice@example.com', to: 'x@remote.example', args: ['--header', 'Subject: via socketmap'] });
  assert.match(b.transcript, /<- {2}250 2\.0\.0 Ok: queued as/, `socketmap mode, 127.0.0.21${late()}:\n${b.transcript}\n${(await pfS.readLog()).slice(-2000)}`);
  const msgs = await waitMessages(2);
  const viaPolicy = msgs.find((m) => m.data.toString().includes('Subject: via policy'));
  const viaSocketmap = msgs.find((m) => m.data.toString().includes('Subject: via socketmap'));
  assert.ok(viaPolicy && viaSocketmap, 'both messages reached the sink');
  assert.deepEqual(viaPolicy.to, ['x@remote.example']);
  assert.match(viaPolicy.data.toString(), /^X-Relaygate-Trust: permit_pop_before_smtp client=\[127\.0\.0\.21\] user=alice service=pop3 expires=/m);
  assert.doesNotMatch(viaSocketmap.data.toString(), /X-Relaygate-Trust/);

  // a stranger: Postfix's own reject_unauth_destination after relaygate's DUNNO / NOTFOUND
  for (const pf of [pfP, pfS]) {
    const r = await swaks({ port: pf.port, localAddress: '127.0.0.22', from: 'nobody@elsewhere.example', to: 'x@remote.example' });
    assert.match(rejectLine(r.transcript), /^<\*\* 554 5\.7\.1 <x@remote\.example>: Relay access denied$/, r.transcript);
  }
  // relaygate logged its own decisions, Postfix-shaped
  assert.ok(events().some((e) => String(e['msg']).startsWith('NOQUEUE: permit: RCPT from unknown[127.0.0.21]: permit_pop_before_smtp user=alice')), diagnostics());

  // the grant expires (grace 4 s from the login line): denied again in both modes
  const gone = await pollFor(async () => ((await grantAnswer('127.0.0.21')) === 'NOTFOUND ' ? true : undefined), GRACE_S * 1000 + 5000, 100);
  assert.equal(gone, true, `grant did not expire${diagnostics()}`);
  // (a sender nobody owns: alice@example.com would now meet reject_sender_login_mismatch, "not logged in")
  for (const pf of [pfP, pfS]) {
    const r = await swaks({ port: pf.port, localAddress: '127.0.0.21', from: 'roaming@elsewhere.example', to: 'x@remote.example' });
    assert.match(rejectLine(r.transcript), /^<\*\* 554 5\.7\.1 <x@remote\.example>: Relay access denied$/, r.transcript);
  }
  const spoof = await swaks({ port: pfP.port, localAddress: '127.0.0.21', from: 'alice@example.com', to: 'x@remote.example' });
  assert.match(rejectLine(spoof.transcript), /^<\*\* 553 5\.7\.1 <alice@example\.com>: Sender address rejected: not logged in$/, spoof.transcript);
  assert.equal(sink!.messages.length, 2, 'nothing else was relayed');
});

test('sender-login checks: a SASL user and a POP-before-SMTP user through the policy service; SASL through socketmap sender_login', async () => {
  const pf = pfPolicy!;
  const before = sink!.messages.length;
  // SASL (Postfix → real Dovecot auth) as bob, sending as alice: relaygate's reject_sender_login_mismatch
  const bad = await swaks({ port: pf.port, localAddress: '127.0.0.23', from: 'alice@example.com', to: 'x@remote.example', args: ['--auth', 'PLAIN', '--auth-user', 'bob', '--auth-password', 'bob-pw'] });
  assert.match(bad.transcript, /<- {2}235 2\.7\.0 Authentication successful/, bad.transcript);
  assert.match(rejectLine(bad.transcript), /^<\*\* 553 5\.7\.1 <alice@example\.com>: Sender address rejected: not owned by user bob$/, `${bad.transcript}${diagnostics()}`);
  // SASL as alice, her own address: relayed
  const good = await swaks({ port: pf.port, localAddress: '127.0.0.23', from: 'alice@example.com', to: 'x@remote.example', args: ['--auth', 'PLAIN', '--auth-user', 'alice', '--auth-password', 'alice-pw'] });
  assert.match(good.transcript, /<- {2}250 2\.0\.0 Ok: queued as/, good.transcript);
  // a POP-before-SMTP user (grant for bob at 127.0.0.24) may not use alice's address either
  await appendFile(maillog, loginLine('bob', '127.0.0.24'));
  assert.equal(await pollFor(async () => ((await grantAnswer('127.0.0.24')) === 'OK OK' ? true : undefined), 5000, 50), true);
  const pop = await swaks({ port: pf.port, localAddress: '127.0.0.24', from: 'alice@example.com', to: 'x@remote.example' });
  assert.match(rejectLine(pop.transcript), /^<\*\* 553 5\.7\.1 <alice@example\.com>: Sender address rejected: not owned by user bob$/, pop.transcript);
  const popOwn = await swaks({ port: pf.port, localAddress: '127.0.0.24', from: 'bob@example.com', to: 'x@remote.example' });
  assert.match(popOwn.transcript, /<- {2}250 2\.0\.0 Ok: queued as/, popOwn.transcript);
  // socketmap mode: Postfix's own reject_authenticated_sender_login_mismatch, reading relaygate's sender_login map
  const smBad = await swaks({ port: pfSocketmap!.port, localAddress: '127.0.0.23', from: 'alice@example.com', to: 'x@remote.example', args: ['--auth', 'PLAIN', '--auth-user', 'bob', '--auth-password', 'bob-pw'] });
  assert.match(rejectLine(smBad.transcript), /^<\*\* 553 5\.7\.1 <alice@example\.com>: Sender address rejected: not owned by user bob$/, smBad.transcript);
  const smGood = await swaks({ port: pfSocketmap!.port, localAddress: '127.0.0.23', from: 'bob@example.com', to: 'x@remote.example', args: ['--auth', 'PLAIN', '--auth-user', 'bob', '--auth-password', 'bob-pw'] });
  assert.match(smGood.transcript, /<- {2}250 2\.0\.0 Ok: queued as/, smGood.transcript);
  await waitMessages(before + 3);
  // Postfix saw the policy's answers
  await pf.waitForLog(/NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.23\]: 553 5\.7\.1 <alice@example\.com>: Sender address rejected: not owned by user bob;.*sasl_username|NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.23\]: 553 5\.7\.1/, 5000);
});

test('relaygate stopped: policy → Postfix smtpd_policy_service_default_action (4xx); socketmap → temporary lookup failure (4xx)', async () => {
  daemon!.kill('SIGTERM');
  assert.equal(await waitExit(daemon!, 15_000), true, 'relaygate did not stop');
  assert.equal(daemon!.exitCode, 0, diagnostics());
  const before = sink!.messages.length;
  const p = await swaks({ port: pfPolicy!.port, localAddress: '127.0.0.21', from: 'alice@example.com', to: 'x@remote.example' });
  assert.match(rejectLine(p.transcript), /^<\*\* 450 4\.7\.1 .*relaygate unavailable$/, p.transcript);
  const s = await swaks({ port: pfSocketmap!.port, localAddress: '127.0.0.21', from: 'alice@example.com', to: 'x@remote.example' });
  // Postfix 3.7 answers a socketmap table error in check_client_access with its "Server configuration error"
  assert.match(rejectLine(s.transcript), /^<\*\* 451 4\.3\.5 <unknown\[127\.0\.0\.21\]>: Client host rejected: Server configuration error$/, s.transcript);
  await pfPolicy!.waitForLog(/warning: problem talking to server 127\.0\.0\.1:\d+/, 5000);
  await pfSocketmap!.waitForLog(/warning: table socketmap:inet:127\.0\.0\.1:\d+:grant lookup error: Connection refused/, 5000);
  assert.equal(sink!.messages.length, before, 'nothing relayed while relaygate is down');
});
