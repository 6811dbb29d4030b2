// End to end: three REAL relaygate daemons (`relaygate run -c FILE` as child processes). The "SMTP host"
// serves the signed HTTP feed over HTTPS on 127.0.0.32 with a self-signed certificate made by openssl; two
// "POP hosts" follow their own Dovecot logs and push (push_to, trusting the certificate through push_ca):
// pop1 with the default grace, pop2 with grace 3s. Lines are appended to the logs in Dovecot's syslog
// format; the results are read from the SMTP host's own access map and through the real CLI.
//
// Covers: a login appended on a POP host becomes a grant (source feed:pop1, user, service) on the SMTP
// host, which `relaygate check` then permits to relay, while the POP host itself keeps no grant; the SMTP
// host stopped for a while and started again: the login queued meanwhile arrives, and the one that grew
// older than grace in the outbox is dropped (and logged) instead; requests made with curl and an HMAC
// computed by openssl (README's recipe): the genuine one is accepted, its replay, a forged signature and
// an old timestamp are refused with 401 and logged with their reasons; every daemon stops with exit 0.
//
// Needs curl and openssl (Debian: curl, openssl; CI installs them in .ci/run). Missing = failure, not skip.
// Loopback only, IP literals only; every wait is bounded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { openLmdbAccessMap, type LmdbAccessMap } from '../../src/store/lmdb-map.ts';
import { CidrSet } from '../../src/net/index.ts';
import { silentLogger } from '../../src/log/logger.ts';
import { freePort, pollFor, run } from '../helpers/proc.ts';
import { selfSignedCert } from '../helpers/feed.ts';
import { Daemon, relaygate as relaygateCli } from '../helpers/daemon.ts';

const SMTP_IP = '127.0.0.32';
const SECRET1 = 'e2e-pop1-secret-0123456789abcdef0123456789abcdef';
const SECRET2 = 'e2e-pop2-secret-0123456789abcdef0123456789abcdef';
let dir = '';
let port = 0;
let cert = '';
let smtpCfg = '';
let pop1Cfg = '';
let pop2Cfg = '';
let smtp: Daemon | undefined;
let pop1: Daemon | undefined;
let pop2: Daemon | undefined;
let smtpMap: LmdbAccessMap | undefined;

function dovecotLine(ip: string, user: string, service = 'pop3'): string {
  const ts = new Date().toISOString().replace('Z', '000+00:00');
  return `${ts} pop dovecot: ${service}-login: Login: user=<${user}>, method=PLAIN, rip=${ip}, lip=192.0.2.1, mpid=${1000 + Math.floor(Math.random() * 9000)}, session=<${Math.random().toString(36).slice(2, 14)}>\n`;
}

async function requirePrerequisites(): Promise<void> {
  const missing: string[] = [];
  for (const [cmd, args] of [['curl', ['--version']], ['openssl', ['version']]] as const) {
    const r = await run(cmd, [...args], { timeoutMs: 10_000 }).catch((e: Error) => e);
    if (r instanceof Error || r.code !== 0) missing.push(cmd);
  }
  if (missing.length > 0) throw new Error(`push end-to-end test cannot run: ${missing.join(', ')} not installed. To fix: apt-get install -y --no-install-recommends curl openssl (CI installs them in .ci/run)`);
}

async function waitGrant(ip: string, timeoutMs: number): Promise<Awaited<ReturnType<LmdbAccessMap['lookup']>>> {
  const g = await pollFor(() => smtpMap!.lookup(ip), timeoutMs, 20);
  if (g === undefined) assert.fail(`no grant for ${ip} on the SMTP host within ${timeoutMs} ms\n--- smtp:\n${smtp?.out.slice(-2000)}\n--- pop1:\n${pop1?.out.slice(-2000)}`);
  return g;
}

before(async () => {
  await requirePrerequisites();
  dir = await mkdtemp(join(tmpdir(), 'rg-push-e2e-'));
  for (const d of ['smtp', 'pop1', 'pop2', 'tls']) await mkdir(join(dir, d));
  ({ cert } = await selfSignedCert(join(dir, 'tls'), SMTP_IP));
  port = await freePort([SMTP_IP]);
  const url = `https://${SMTP_IP}:${port}/v1/logins`;
  smtpCfg = join(dir, 'smtp.toml');
  await writeFile(
    smtpCfg,
    [
      `data_dir = "${join(dir, 'smtp')}"`,
      'mynetworks = ["127.0.0.0/8"]',
      'sweep_interval = "1h"',
      '[feed]',
      `listen = "${SMTP_IP}:${port}"`,
      `tls_cert = "${cert}"`,
      `tls_key = "${join(dir, 'tls', 'key.pem')}"`,
      `keys = { pop1 = "${SECRET1}", pop2 = ["${SECRET2}", "an-old-secret-being-rotated-out-0123456789"] }`,
      '',
    ].join('\n'),
  );
  const popConfig = (name: string, secret: string, grace: string) =>
    [
      `data_dir = "${join(dir, name)}"`,
      `grace = "${grace}"`,
      `push_to = ["${url}"]`,
      `push_key_id = "${name}"`,
      `push_key = "${secret}"`,
      `push_ca = "${cert}"`,
      '[[watch]]',
      `path = "${join(dir, name, 'mail.log')}"`,
      'format = "dovecot"',
      'prefix = "rfc3339"',
      '',
    ].join('\n');
  pop1Cfg = join(dir, 'pop1.toml');
  pop2Cfg = join(dir, 'pop2.toml');
  await writeFile(pop1Cfg, popConfig('pop1', SECRET1, '30m'));
  await writeFile(pop2Cfg, popConfig('pop2', SECRET2, '3s'));
  for (const n of ['pop1', 'pop2']) await writeFile(join(dir, n, 'mail.log'), '');
  [smtp, pop1, pop2] = await Promise.all([
    Daemon.start(smtpCfg, dir),
    Daemon.start(pop1Cfg, dir),
    Daemon.start(pop2Cfg, dir),
  ]);
  smtpMap = await openLmdbAccessMap({ path: join(dir, 'smtp', 'map'), mynetworks: new CidrSet([]), neverAuthorize: new CidrSet([]), clock: () => Date.now(), logger: silentLogger(), verify: false });
});

after(async () => {
  await smtpMap?.close();
  await Promise.all([smtp, pop1, pop2].map((d) => d?.stop()));
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('a Dovecot login on the POP host becomes a grant on the SMTP host, which then permits relaying', async () => {
  await appendFile(join(dir, 'pop1', 'mail.log'), dovecotLine('192.0.2.7', 'alice'));
  const g = await waitGrant('192.0.2.7', 10_000);
  assert.equal(g!.source, 'feed:pop1');
  assert.equal(g!.user, 'alice');
  assert.equal(g!.service, 'pop3');
  const accepted = await smtp!.waitFor('feed_accepted', (e) => e.feeder === 'pop1');
  assert.equal(accepted.granted, 1);
  const check = await relaygateCli(['check', '--client', '192.0.2.7', '--rcpt', 'bob@remote.example', '-c', smtpCfg], dir);
  assert.equal(check.code, 0, `relaygate check permits the pushed grant: ${check.stdout}${check.stderr}`);
  assert.match(check.stdout, /permit_pop_before_smtp/);
  const local = await relaygateCli(['map', 'query', '192.0.2.7', '--json', '-c', pop1Cfg], dir);
  assert.equal(local.code, 1, 'push_to without push_local: the POP host keeps no grant of its own');
});

test('SMTP host down, then back: the queued login arrives; the one older than grace is dropped, not delivered', async () => {
  assert.equal(await smtp!.stop(), 0);
  const downAt = Date.now();
  await appendFile(join(dir, 'pop1', 'mail.log'), dovecotLine('192.0.2.8', 'bob', 'imap'));
  await appendFile(join(dir, 'pop2', 'mail.log'), dovecotLine('192.0.2.9', 'carol'));
  await pop1!.waitFor('push_failed', (e) => Number(e.queued) >= 1);
  await pop2!.waitFor('push_failed', (e) => Number(e.queued) >= 1);
  // pop2's grace is 3 s: keep the SMTP host away until its queued login is stale
  await sleep(Math.max(0, 3500 - (Date.now() - downAt)));
  smtp = await Daemon.start(smtpCfg, dir);
  const g = await waitGrant('192.0.2.8', 40_000);
  assert.equal(g!.user, 'bob');
  assert.equal(g!.source, 'feed:pop1');
  await pop1!.waitFor('push_recovered');
  const dropped = await pop2!.waitFor('push_dropped_stale', () => true, 40_000);
  assert.equal(dropped.count, 1);
  // pop2 is delivering again (its next login arrives), and the stale one never did
  await appendFile(join(dir, 'pop2', 'mail.log'), dovecotLine('192.0.2.10', 'dave'));
  const d = await waitGrant('192.0.2.10', 40_000);
  assert.equal(d!.source, 'feed:pop2');
  assert.equal(await smtpMap!.lookup('192.0.2.9'), undefined, 'a login older than grace was not granted');
});

test('curl with an openssl-computed HMAC: accepted once; its replay, a forged signature and an old timestamp get 401 and are logged', async () => {
  const url = `https://${SMTP_IP}:${port}/v1/logins`;
  // README's recipe, verbatim apart from the variables
  const script = `
set -eu
body='{"ip":"198.51.100.20","user":"erin","service":"imap"}'
sign() { { printf 'relaygate-v1\\nPOST\\n/v1/logins\\n%s\\n%s\\n%s\\n' "$KEY_ID" "$1" "$2"; printf '%s' "$body"; } | openssl dgst -sha256 -hmac "$3" -r | cut -d' ' -f1; }
send() { curl -sS --max-time 10 --cacert "$CA" -o /dev/null -w '%{http_code}\\n' "$URL" -H 'Content-Type: application/json' -H "X-Relaygate-Key-Id: $KEY_ID" -H "X-Relaygate-Timestamp: $1" -H "X-Relaygate-Nonce: $2" -H "X-Relaygate-Signature: v1=$3" --data-binary "$body"; }
ts=$(date +%s); nonce=$(openssl rand -hex 16)
sig=$(sign "$ts" "$nonce" "$SECRET")
send "$ts" "$nonce" "$sig"                                   # genuine
send "$ts" "$nonce" "$sig"                                   # replay
n2=$(openssl rand -hex 16); send "$ts" "$n2" "$(sign "$ts" "$n2" "forged-secret-of-sufficient-length-0123456789")"
old=$((ts - 120)); n3=$(openssl rand -hex 16); send "$old" "$n3" "$(sign "$old" "$n3" "$SECRET")"
`;
  const r = await run('bash', ['-c', script], { env: { ...process.env, KEY_ID: 'pop1', SECRET: SECRET1, URL: url, CA: cert }, timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split('\n'), ['200', '401', '401', '401']);
  assert.equal((await smtpMap!.lookup('198.51.100.20'))?.user, 'erin');
  const reasons = smtp!.events('feed_refused').map((e) => e.reason);
  for (const why of ['replay', 'bad_signature', 'stale_timestamp']) assert.ok(reasons.includes(why), `SMTP host logged ${why}: ${JSON.stringify(reasons)}`);
  assert.ok(!smtp!.out.includes(SECRET1) && !pop1!.out.includes(SECRET1), 'no secret in any log');
});

test('every daemon stops cleanly on SIGTERM', async () => {
  for (const [name, d] of [['pop1', pop1!], ['pop2', pop2!], ['smtp', smtp!]] as const) assert.equal(await d.stop(), 0, `${name} exit status\n${d.out.slice(-1500)}`);
});
