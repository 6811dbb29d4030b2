// [policy] and [socketmap] configuration through the real loader and validator (what `relaygate config check`
// and `relaygate run` both run): defaults, and every problem reported at once, naming the key and the fix.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, validateConfig } from '../../../src/config/index.ts';
import { isRelaygateError } from '../../../src/errors.ts';
import { parseListen, isRemoteListen, parseSocketMode } from '../../../src/frontends/postfix/listen.ts';

const dir = await mkdtemp(join(tmpdir(), 'rg-pf-config-'));
after(() => rm(dir, { recursive: true, force: true }));
let n = 0;

async function problems(toml: string): Promise<string[]> {
  const file = join(dir, `c${n++}.toml`);
  await writeFile(file, `data_dir = ${JSON.stringify(join(dir, 'data'))}\n${toml}`);
  try {
    await validateConfig(await loadConfig(file));
    return [];
  } catch (err) {
    if (!isRelaygateError(err)) throw err;
    return err.details.length > 0 ? [...err.details] : [err.message];
  }
}

test('defaults: both services off; [policy] list permit_pop_before_smtp, DEFER_IF_PERMIT tempfail; socketmap maps grant / sender_login', async () => {
  const file = join(dir, 'defaults.toml');
  await writeFile(file, '[policy]\nlisten = "127.0.0.1:10031"\n[socketmap]\nlisten = "unix:/run/relaygate/socketmap"\n');
  const { config } = await loadConfig(file);
  assert.deepEqual(config.policy.restrictions, ['permit_pop_before_smtp']);
  assert.equal(config.policy.tempfail_action, 'DEFER_IF_PERMIT Service temporarily unavailable');
  assert.equal(config.policy.prepend_header, undefined);
  assert.deepEqual(config.policy.clients, ['127.0.0.0/8', '[::1]/128']);
  assert.equal(config.socketmap.grant_map, 'grant');
  assert.equal(config.socketmap.grant_action, 'OK');
  assert.equal(config.socketmap.sender_login_map, 'sender_login');
  assert.deepEqual(await problems('[policy]\nlisten = "127.0.0.1:10031"\n[socketmap]\nlisten = "[::1]:10032"\n'), []);
  const off = join(dir, 'off.toml');
  await writeFile(off, '');
  const c2 = (await loadConfig(off)).config;
  assert.equal(c2.policy.listen, undefined);
  assert.equal(c2.socketmap.listen, undefined);
});

test('every problem at once, each naming its key', async () => {
  const p = await problems(
    [
      '[policy]',
      'listen = "mail.example.com:10031"',
      'tempfail_action = "OK"',
      'prepend_header = "X Bad:"',
      'restrictions = ["permit", "permit_pop_befor_smtp"]',
      '[socketmap]',
      'listen = "192.0.2.10:10032"',
      'grant_map = "same"',
      'sender_login_map = "same"',
    ].join('\n'),
  );
  const text = p.join('\n');
  assert.match(text, /policy\.listen(?: \(line \d+\))?: "mail\.example\.com" is not an IP address literal/);
  assert.match(text, /policy\.tempfail_action(?: \(line \d+\))?: must be temporary/);
  assert.match(text, /policy\.prepend_header(?: \(line \d+\))?: "X Bad:" is not a header field name/);
  assert.match(text, /policy\.restrictions(?: \(line \d+\))?: entry 2 "permit_pop_befor_smtp": unknown restriction; did you mean "permit_pop_before_smtp"\?/);
  assert.match(text, /policy\.restrictions(?: \(line \d+\))?: entry 1 "permit" answers OK to every request/);
  assert.match(text, /socketmap\.listen(?: \(line \d+\))?: 192\.0\.2\.10:10032 is not a loopback address and the socketmap protocol has no authentication: list the Postfix hosts allowed to connect in socketmap\.clients/);
  assert.match(text, /socketmap\.sender_login_map(?: \(line \d+\))?: must differ from socketmap\.grant_map/);
  // located in the file (line 1 is data_dir, line 2 [policy])
  assert.match(text, /^policy\.listen \(line 3\): /m);
  assert.match(text, /^policy\.restrictions \(line 6\): /m);
  // the same list compiled for MAIL and RCPT: reported once
  assert.equal(p.filter((l) => l.includes('permit_pop_befor_smtp')).length, 1);
  // socket_mode is checked by the schema (a string that is no octal mode), which reports before the semantics
  const m = await problems('[socketmap]\nlisten = "127.0.0.1:10032"\nsocket_mode = "999"\n');
  assert.match(m.join('\n'), /socket_mode/);
});

test('a non-loopback listen address is fine once clients names the Postfix hosts; a 5xx tempfail is refused', async () => {
  assert.deepEqual(await problems('[policy]\nlisten = "0.0.0.0:10031"\nclients = ["127.0.0.0/8", "192.0.2.25/32"]\n'), []);
  assert.match((await problems('[policy]\nlisten = "0.0.0.0:10031"\n')).join('\n'), /policy\.listen(?: \(line \d+\))?: 0\.0\.0\.0:10031 is not a loopback address/);
  assert.match((await problems('[policy]\nlisten = "127.0.0.1:10031"\nclients = ["192.0.2.300/32"]\n')).join('\n'), /policy\.clients/);
  assert.match((await problems('[policy]\nlisten = "127.0.0.1:10031"\ntempfail_action = "554 5.7.1 no"\n')).join('\n'), /not a temporary code/);
  assert.deepEqual(await problems('[policy]\nlisten = "127.0.0.1:10031"\ntempfail_action = "451 4.3.0 Try again later"\nrestrictions = ["reject_unauth_destination"]\n'), []);
  assert.match((await problems('[policy]\nlisten = "127.0.0.1:10031"\n[socketmap]\nlisten = "127.0.0.1:10031"\n')).join('\n'), /socketmap\.listen(?: \(line \d+\))?: 127\.0\.0\.1:10031 is already used by policy\.listen/);
  assert.match((await problems('[policy]\nlisten = "inet:127.0.0.1:10031"\n')).join('\n'), /write "127\.0\.0\.1:10031" without "inet:"/);
  assert.match((await problems('[policy]\nlisten = "unix:relative/path"\n')).join('\n'), /must be absolute/);
  assert.match((await problems('[policy]\nlisten = "127.0.0.1:10031"\nrestrictions = ["reject_sender_login_mismatch"]\n')).join('\n'), /policy\.restrictions(?: \(line \d+\))?: entry 1 "reject_sender_login_mismatch" needs sender_login_maps/);
});

test('listen parsing helpers', () => {
  assert.deepEqual(parseListen('127.0.0.1:10031'), { kind: 'tcp', host: '127.0.0.1', port: 10031 });
  assert.deepEqual(parseListen('[::1]:10031'), { kind: 'tcp', host: '::1', port: 10031 });
  assert.deepEqual(parseListen('unix:/var/spool/postfix/private/relaygate'), { kind: 'unix', path: '/var/spool/postfix/private/relaygate' });
  assert.equal(typeof parseListen('127.0.0.1'), 'string');
  assert.equal(typeof parseListen(`unix:/${'x'.repeat(120)}`), 'string');
  assert.equal(isRemoteListen({ kind: 'tcp', host: '127.0.0.2', port: 1 }), false);
  assert.equal(isRemoteListen({ kind: 'tcp', host: '::', port: 1 }), true);
  assert.equal(isRemoteListen({ kind: 'unix', path: '/x' }), false);
  assert.equal(parseSocketMode('0660'), 0o660);
  assert.equal(parseSocketMode(0o600), 0o600);
  assert.equal(parseSocketMode('0999'), undefined);
});
