// Migration, end to end: a real `relaygate run` with the SMTP gateway; swaks relays as a POP-before-SMTP
// user (grant added with `relaygate map add` while the daemon runs), as a user whose domain's sunset date has
// passed (refused with the sunset text), and as an SMTP AUTH user over STARTTLS. After SIGTERM (the usage log
// is flushed at stop) `relaygate report` lists exactly the POP-before-SMTP user with count, client IP and
// sunset date; `--all` shows the SASL user too. The message relayed before the sunset carries the notice header.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startSink, type Sink } from '../helpers/smtp-sink.ts';
import { swaks } from '../helpers/smtp-swaks.ts';
import { run } from '../helpers/proc.ts';
import { Daemon } from '../helpers/daemon.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'src/main.ts');
const TSX = import.meta.resolve('tsx');
const FUTURE = new Date(Date.now() + 400 * 86_400_000).toISOString().slice(0, 10);
const PAST = new Date(Date.now() - 2 * 86_400_000).toISOString().slice(0, 10);

let dir: string;
let conf: string;
let sink: Sink;
let daemon: Daemon | undefined;

const cli = (...args: string[]) => run(process.execPath, ['--import', TSX, MAIN, ...args, '-c', conf], { timeoutMs: 30_000 });

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rg-report-'));
  sink = await startSink();
  await writeFile(join(dir, 'passwd'), 'bob@example.com:{PLAIN}bob-secret\n');
  conf = join(dir, 'relaygate.toml');
  await writeFile(
    conf,
    [
      `data_dir = ${JSON.stringify(join(dir, 'data'))}`,
      'mynetworks = ["127.0.0.10/32"]',
      'mydestination = ["local.example"]',
      `pop_before_smtp_sunset = { "example.com" = ${FUTURE}, "late.example" = ${PAST} }`,
      'pop_before_smtp_sunset_header = "X-Relay-Notice"',
      '[[listen]]',
      'address = "127.0.0.1:0"',
      'role = "smtp"',
      '[smtp]',
      'hostname = "gw.test"',
      `relayhost = "127.0.0.1:${sink.port}"`,
      'peername_lookup = false',
      '[auth]',
      'backend = "passwd-file"',
      `path = ${JSON.stringify(join(dir, 'passwd'))}`,
      '',
    ].join('\n'),
  );
});
after(async () => {
  await daemon?.stop();
  await sink?.close();
  await rm(dir, { recursive: true, force: true });
});

test('report: POP-before-SMTP users with count, IPs and sunset; the sunset refuses after its date', async () => {
  daemon = await Daemon.start(conf, dir);
  const port = await daemon.port('smtp_listening');
  for (const [ip, user] of [['127.0.0.21', 'alice@example.com'], ['127.0.0.22', 'zed@late.example']] as const) {
    const r = await cli('map', 'add', ip, '--user', user);
    assert.equal(r.code, 0, r.stderr);
  }

  const alice = await swaks({ port, localAddress: '127.0.0.21', from: 'alice@example.com', to: 'bob@remote.example' });
  assert.equal(alice.code, 0, alice.transcript);
  const [msg] = await sink.waitFor(1, 10_000);
  assert.match(msg!.data.toString(), new RegExp(`^X-Relay-Notice: POP-before-SMTP relaying ends on ${FUTURE} for example\\.com`, 'm'));

  const zed = await swaks({ port, localAddress: '127.0.0.22', from: 'zed@late.example', to: 'bob@remote.example' });
  assert.notEqual(zed.code, 0);
  assert.match(zed.transcript, new RegExp(`<\\*\\* 550 5\\.7\\.1 Relaying after a POP/IMAP login ended on ${PAST}: turn on SMTP authentication`));

  const bob = await swaks({
    port,
    localAddress: '127.0.0.23',
    from: 'bob@example.com',
    to: 'carol@remote.example',
    args: ['--tls', '--auth', 'PLAIN', '--auth-user', 'bob@example.com', '--auth-password', 'bob-secret'],
  });
  assert.equal(bob.code, 0, bob.transcript);
  assert.equal(sink.messages.length, 2);

  assert.equal(await daemon.stop(20_000), 0, 'SIGTERM: exit 0 (the usage log is flushed at stop)');

  const rep = await cli('report', '--json');
  assert.equal(rep.code, 0, rep.stderr);
  const j = JSON.parse(rep.stdout) as { days: number; dependents: Array<{ user: string; count: number; ips: string[]; lastSasl: string | null; sunset: { key: string; date: string } | null }> };
  assert.equal(j.days, 30);
  assert.deepEqual(
    j.dependents.map((d) => [d.user, d.count, d.ips, d.lastSasl, d.sunset]),
    [['alice@example.com', 1, ['127.0.0.21'], null, { key: 'example.com', date: FUTURE }]],
    'zed was refused (not counted), bob used SMTP AUTH',
  );
  const text = await cli('report');
  assert.match(text.stdout, /1 user\(s\) relayed on POP-before-SMTP in the last 30 days/);
  assert.match(text.stdout, /alice@example\.com .* 127\.0\.0\.21 +never +\d{4}-\d\d-\d\d \(example\.com\)/);
  const all = await cli('report', '--all', '--json');
  const users = (JSON.parse(all.stdout) as { users: Array<{ user: string; method: string; count: number }> }).users;
  assert.deepEqual(users.map((u) => [u.user, u.method, u.count]), [['alice@example.com', 'pop', 1], ['bob@example.com', 'sasl', 1]]);
  const bad = await cli('report', '--days', 'zero');
  assert.equal(bad.code, 64);
});
