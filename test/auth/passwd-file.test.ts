// passwd-file backend: Dovecot's file format with hashes made by the real tools, reload on change, CRAM-MD5
// per user, slow hashes off the main thread, bad files at start-up.
//
// Debian packages: dovecot-core (doveadm pw), whois (mkpasswd), apache2-utils (htpasswd).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { mkdtemp, rm, writeFile, rename, chmod, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBackend } from '../../src/auth/index.ts';
import { PasswdFileBackend, parsePasswdFile } from '../../src/auth/passwd-file.ts';
import type { AuthRequest, AuthResult } from '../../src/auth/types.ts';
import { RelaygateError } from '../../src/errors.ts';
import { manualClock, systemClock } from '../../src/clock.ts';
import { silentLogger } from '../../src/log/logger.ts';
import { pollFor } from '../helpers/proc.ts';
import { captureLogger, doveadmPw, htpasswdBcrypt, mkpasswd } from './tools.ts';

const PW = 'Sekret pw ünï';
let dir: string;
let file: string;
let backend: PasswdFileBackend;
const log = captureLogger();
/** user → how the entry was made, for the table-driven tests */
const users: Array<{ user: string; via: string; field: string }> = [];

const req = (username: string, password: string | undefined, extra: Partial<AuthRequest> = {}): AuthRequest => ({
  mechanism: 'PLAIN',
  username,
  ...(password !== undefined ? { password } : {}),
  clientIp: '192.0.2.9',
  localIp: '127.0.0.1',
  secured: true,
  ...extra,
});

const outcome = (r: AuthResult): string => (r.outcome === 'ok' ? `ok:${r.user}` : r.outcome);

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rg-passwd-file-'));
  file = join(dir, 'users');
  const add = (user: string, via: string, field: string): void => {
    users.push({ user, via, field });
  };
  for (const s of ['PLAIN', 'SHA512-CRYPT', 'SHA256-CRYPT', 'BLF-CRYPT', 'ARGON2ID', 'ARGON2I', 'SSHA512', 'SSHA256', 'SSHA', 'CRAM-MD5', 'MD5-CRYPT']) {
    add(`u-${s.toLowerCase()}`, `doveadm pw -s ${s}`, await doveadmPw(s, PW));
  }
  const blf = (await doveadmPw('BLF-CRYPT', PW)).slice('{BLF-CRYPT}'.length);
  add('u-2b', 'BLF-CRYPT as $2b$', `{BLF-CRYPT}$2b$${blf.slice(4)}`);
  add('u-2a', 'BLF-CRYPT as $2a$', `{BLF-CRYPT}$2a$${blf.slice(4)}`);
  add('u-mkpasswd', 'mkpasswd -m sha-512, no scheme (CRYPT)', await mkpasswd('sha-512', PW));
  add('u-htpasswd', 'htpasswd -nbB ($2y$) as {CRYPT}', `{CRYPT}${await htpasswdBcrypt(PW)}`);
  add('alice@example.org', 'user@domain, PLAIN', `{PLAIN}${PW}`);
  add('MixedCase', 'mixed-case name', `{PLAIN}${PW}`);

  const lines = [
    '# relaygate test passwd-file: comments, blank lines, extra fields',
    '',
    ...users.map((u, i) => (i % 3 === 0 ? `${u.user}:${u.field}:1000:1000::/home/${u.user}::userdb_quota_rule=*:storage=1G` : `${u.user}:${u.field}`)),
    `u-pam34:${createHash('md5').update(PW).digest('hex')}[34]`,
    `u-pam13:${await mkpasswd('descrypt', 'pw')}[13]`,
    `u-dup:{PLAIN}${PW}`,
    `u-dup:{PLAIN}other`,
    `u-unknown-scheme:{SCRAM-SHA-256}4096,abc,def`,
    `u-yescrypt:${await mkpasswd('yescrypt', PW)}`,
    `u-nopass:`,
    `u-nopassword::::::::nopassword`,
    `u-nets:{PLAIN}${PW}::::::allow_nets=10.0.0.0/8,192.0.2.0/24`,
    `u-nets-other:{PLAIN}${PW}::::::allow_nets=10.0.0.0/8`,
    `u-nologin:{PLAIN}${PW}::::::nologin reason=moved`,
    `u-crlf:{PLAIN}${PW}\r`,
    `o\\'brien:{PLAIN}${PW}`,
    `:{PLAIN}nouser`,
    '#u-commented:{PLAIN}x',
    '',
  ];
  await writeFile(file, lines.join('\n'));
  backend = (await createBackend({ backend: 'passwd-file', path: file, timeoutMs: 30_000, logger: log.logger, clock: systemClock })) as PasswdFileBackend;
});

after(async () => {
  await backend?.close();
  await rm(dir, { recursive: true, force: true });
});

test('every scheme made by the real tools: right password → ok with the file name, wrong → fail', async () => {
  assert.ok(users.length >= 17);
  for (const u of users) {
    assert.equal(outcome(await backend.authenticate(req(u.user, PW))), `ok:${u.user}`, `${u.user} (${u.via})`);
    assert.equal(outcome(await backend.authenticate(req(u.user, PW + 'x'))), 'fail', `${u.user} (${u.via}) wrong password`);
    assert.equal(outcome(await backend.authenticate(req(u.user, ''))), 'fail', `${u.user} (${u.via}) empty password`);
  }
});

test('LOGIN is checked like PLAIN', async () => {
  assert.equal(outcome(await backend.authenticate(req('u-ssha512', PW, { mechanism: 'LOGIN' }))), 'ok:u-ssha512');
  assert.equal(outcome(await backend.authenticate(req('u-ssha512', 'nope', { mechanism: 'LOGIN' }))), 'fail');
});

test('unknown users, empty and hostile usernames fail (never tempfail, never ok)', async () => {
  for (const u of ['nosuch', 'u-', 'u-plain ', ' u-plain', 'u-plain\n', 'u-plain\0', '', 'alice', 'example.org', 'u-commented', '#u-commented']) {
    const r = await backend.authenticate(req(u, PW));
    assert.equal(r.outcome, 'fail', JSON.stringify(u));
  }
});

test('names: exact first, then lower-cased (Dovecot %Lu); escaped quote; CRLF line ending', async () => {
  assert.equal(outcome(await backend.authenticate(req('U-PLAIN', PW))), 'ok:u-plain');
  assert.equal(outcome(await backend.authenticate(req('MixedCase', PW))), 'ok:MixedCase');
  assert.equal(outcome(await backend.authenticate(req('mixedcase', PW))), 'fail');
  assert.equal(outcome(await backend.authenticate(req("o'brien", PW))), "ok:o'brien");
  assert.equal(outcome(await backend.authenticate(req('u-crlf', PW))), 'ok:u-crlf');
  assert.equal(outcome(await backend.authenticate(req('ALICE@EXAMPLE.ORG', PW))), 'ok:alice@example.org');
});

test('libpam-pwdfile hash[34] is PLAIN-MD5, hash[13] CRYPT (DES: unsupported); the first of duplicate users wins', async () => {
  assert.equal(outcome(await backend.authenticate(req('u-pam34', PW))), 'ok:u-pam34');
  assert.equal(outcome(await backend.authenticate(req('u-pam13', 'pw'))), 'fail');
  assert.equal(outcome(await backend.authenticate(req('u-dup', PW))), 'ok:u-dup');
  assert.equal(outcome(await backend.authenticate(req('u-dup', 'other'))), 'fail');
});

test('entries that cannot be verified never log in and were reported at load (user and line, no hash)', async () => {
  for (const u of ['u-unknown-scheme', 'u-yescrypt', 'u-nopass', 'u-nopassword']) {
    assert.equal(outcome(await backend.authenticate(req(u, PW))), 'fail', u);
    assert.equal(outcome(await backend.authenticate(req(u, ''))), 'fail', u);
  }
  const warnings = log.lines().filter((l) => l.level === 'warn').map((l) => String(l.msg));
  for (const [u, re] of [
    ['u-unknown-scheme', /unknown password scheme/],
    ['u-yescrypt', /yescrypt is not supported/],
    ['u-nopass', /no password/],
    ['u-nopassword', /nopassword/],
    ['u-dup', /more than once/],
    ['u-pam13', /DES crypt is not supported/],
  ] as const) {
    assert.ok(warnings.some((w) => w.includes(`"${u}"`) && re.test(w) && /line \d+/.test(w)), `no warning for ${u}: ${warnings.join('\n')}`);
  }
  const text = log.text();
  for (const u of users) assert.ok(!text.includes(u.field.slice(-20)), `log contains the hash of ${u.user}`);
  assert.ok(!text.includes(PW), 'log contains a password');
});

test('allow_nets restricts the client address; nologin refuses even the right password', async () => {
  assert.equal(outcome(await backend.authenticate(req('u-nets', PW))), 'ok:u-nets');
  assert.equal(outcome(await backend.authenticate(req('u-nets', PW, { clientIp: '10.1.2.3' }))), 'ok:u-nets');
  assert.equal(outcome(await backend.authenticate(req('u-nets-other', PW))), 'fail');
  assert.equal(outcome(await backend.authenticate(req('u-nets', PW, { clientIp: '198.51.100.1' }))), 'fail');
  const r = await backend.authenticate(req('u-nologin', PW));
  assert.equal(r.outcome, 'fail');
  assert.match(r.outcome === 'fail' ? r.reason : '', /nologin/);
});

test('CRAM-MD5 only for {PLAIN} and {CRAM-MD5} users', async () => {
  assert.equal(backend.supportsCramMd5, true);
  const challenge = '<4711.1763755555@relaygate.test>';
  const cram = (user: string, pw: string): AuthRequest =>
    req(user, undefined, { mechanism: 'CRAM-MD5', challenge, digest: createHmac('md5', pw).update(challenge).digest('hex') });
  for (const u of ['u-plain', 'u-cram-md5', 'alice@example.org']) {
    assert.equal(backend.canCramMd5(u), true, u);
    assert.equal(outcome(await backend.authenticate(cram(u, PW))), `ok:${u}`, u);
    assert.equal(outcome(await backend.authenticate(cram(u, 'wrong'))), 'fail', u);
  }
  for (const u of ['u-sha512-crypt', 'u-argon2id', 'u-ssha', 'nosuch']) {
    assert.equal(backend.canCramMd5(u), false, u);
    assert.equal(outcome(await backend.authenticate(cram(u, PW))), 'fail', u);
  }
  assert.equal(outcome(await backend.authenticate(req('u-plain', undefined, { mechanism: 'CRAM-MD5', challenge }))), 'fail');
});

test('parsePasswdFile: a file without cleartext users does not offer CRAM-MD5', async () => {
  const p = parsePasswdFile(`a:${await doveadmPw('SHA512-CRYPT', 'x')}\n`);
  assert.equal(p.entries.size, 1);
  assert.equal(p.warnings.length, 0);
  const dir2 = await mkdtemp(join(tmpdir(), 'rg-passwd-file-'));
  try {
    await writeFile(join(dir2, 'users'), `a:${await doveadmPw('SHA512-CRYPT', 'x')}\n`);
    const b = await PasswdFileBackend.open({ path: join(dir2, 'users'), timeoutMs: 5000, logger: silentLogger(), clock: systemClock, watch: false });
    assert.equal(b.supportsCramMd5, false);
    await b.close();
  } finally {
    await rm(dir2, { recursive: true, force: true });
  }
});

test('a slow hash (rounds=1000000, bcrypt cost 12) does not hold up other logins', async () => {
  const dir2 = await mkdtemp(join(tmpdir(), 'rg-passwd-file-'));
  const slowSha = await doveadmPw('SHA512-CRYPT', PW, 1_000_000);
  const slowBlf = `{BLF-CRYPT}${await htpasswdBcrypt(PW, 12)}`;
  await writeFile(join(dir2, 'users'), `slow:${slowSha}\nslowb:${slowBlf}\nfast:{PLAIN}${PW}\nfast2:${await doveadmPw('SSHA512', PW)}\n`);
  const b = await PasswdFileBackend.open({ path: join(dir2, 'users'), timeoutMs: 60_000, logger: silentLogger(), clock: systemClock, watch: false });
  try {
    const t0 = performance.now();
    let slowDoneAt = 0;
    const slow = Promise.all([b.authenticate(req('slow', PW)), b.authenticate(req('slowb', PW))]).then((r) => {
      slowDoneAt = performance.now() - t0;
      return r;
    });
    await new Promise((r) => setTimeout(r, 20));
    const fastStarted = performance.now();
    for (let i = 0; i < 20; i++) {
      assert.equal(outcome(await b.authenticate(req(i % 2 ? 'fast' : 'fast2', PW))), i % 2 ? 'ok:fast' : 'ok:fast2');
    }
    const fastTook = performance.now() - fastStarted;
    assert.ok(slowDoneAt === 0, `the slow logins finished first (${slowDoneAt.toFixed(0)} ms): the test proves nothing`);
    assert.ok(fastTook < 1000, `20 fast logins took ${fastTook.toFixed(0)} ms while slow hashes ran`);
    assert.deepEqual((await slow).map(outcome), ['ok:slow', 'ok:slowb']);
  } finally {
    await b.close();
    await rm(dir2, { recursive: true, force: true });
  }
});

test('a verification past the deadline is tempfail (454), never ok; the next login works', async () => {
  const dir2 = await mkdtemp(join(tmpdir(), 'rg-passwd-file-'));
  await writeFile(join(dir2, 'users'), `slow:${await doveadmPw('SHA512-CRYPT', PW, 2_000_000)}\nfast:${await doveadmPw('SHA512-CRYPT', PW)}\n`);
  const b = await PasswdFileBackend.open({ path: join(dir2, 'users'), timeoutMs: 300, logger: silentLogger(), clock: systemClock, watch: false });
  try {
    const t0 = performance.now();
    const r = await b.authenticate(req('slow', PW));
    assert.equal(r.outcome, 'tempfail');
    assert.ok(performance.now() - t0 < 1500);
    assert.equal(outcome(await b.authenticate(req('fast', PW))), 'ok:fast');
  } finally {
    await b.close();
    await rm(dir2, { recursive: true, force: true });
  }
});

test('reload: fs.watch picks up an atomic replace (mv) and an in-place rewrite', async () => {
  const dir2 = await mkdtemp(join(tmpdir(), 'rg-passwd-file-'));
  const path = join(dir2, 'users');
  await writeFile(path, `old:{PLAIN}${PW}\n`);
  const b = await PasswdFileBackend.open({ path, timeoutMs: 5000, logger: silentLogger(), clock: manualClock(0), watch: true, statIntervalMs: 1e12 });
  try {
    assert.equal(outcome(await b.authenticate(req('old', PW))), 'ok:old');
    await writeFile(join(dir2, 'users.tmp'), `new:${await doveadmPw('SHA512-CRYPT', PW)}\n`);
    await rename(join(dir2, 'users.tmp'), path);
    const seen = await pollFor(async () => ((await b.authenticate(req('new', PW))).outcome === 'ok' ? true : undefined), 5000, 50);
    assert.equal(seen, true, 'the replaced file was not reloaded');
    assert.equal(outcome(await b.authenticate(req('old', PW))), 'fail');
    await writeFile(path, `third:{PLAIN}${PW}\n`);
    const seen3 = await pollFor(async () => ((await b.authenticate(req('third', PW))).outcome === 'ok' ? true : undefined), 5000, 50);
    assert.equal(seen3, true, 'the rewritten file was not reloaded');
  } finally {
    await b.close();
    await rm(dir2, { recursive: true, force: true });
  }
});

test('reload without a watcher: the mtime/size check on the AUTH path, at most once per interval', async () => {
  const dir2 = await mkdtemp(join(tmpdir(), 'rg-passwd-file-'));
  const path = join(dir2, 'users');
  await writeFile(path, `old:{PLAIN}${PW}\n`);
  const clock = manualClock(1_000_000);
  const b = await PasswdFileBackend.open({ path, timeoutMs: 5000, logger: silentLogger(), clock, watch: false, statIntervalMs: 1000 });
  try {
    await writeFile(path, `newer:{PLAIN}${PW}\n`);
    assert.equal(outcome(await b.authenticate(req('newer', PW))), 'fail', 'checked again before the interval');
    clock.advance(1000);
    assert.equal(outcome(await b.authenticate(req('newer', PW))), 'ok:newer');
  } finally {
    await b.close();
    await rm(dir2, { recursive: true, force: true });
  }
});

test('an unreadable or missing file keeps the previous table (logged as an error)', async () => {
  const dir2 = await mkdtemp(join(tmpdir(), 'rg-passwd-file-'));
  const path = join(dir2, 'users');
  await writeFile(path, `keep:{PLAIN}${PW}\n`);
  const cap = captureLogger();
  const clock = manualClock(0);
  const b = await PasswdFileBackend.open({ path, timeoutMs: 5000, logger: cap.logger, clock, watch: false, statIntervalMs: 1000 });
  try {
    await rm(path);
    clock.advance(1000);
    assert.equal(outcome(await b.authenticate(req('keep', PW))), 'ok:keep');
    assert.equal(await b.reload(), false);
    await mkdir(path); // a directory where the file was
    clock.advance(1000);
    assert.equal(outcome(await b.authenticate(req('keep', PW))), 'ok:keep');
    assert.ok(cap.lines().some((l) => l.level === 'error' && /keeping the 1 users/.test(String(l.msg))));
    await rm(path, { recursive: true });
    await writeFile(path, `back:{PLAIN}${PW}\n`);
    clock.advance(1000);
    assert.equal(outcome(await b.authenticate(req('back', PW))), 'ok:back');
  } finally {
    await b.close();
    await rm(dir2, { recursive: true, force: true });
  }
});

test('bad options fail at creation with RG_ERR_AUTH_BACKEND', async () => {
  const dir2 = await mkdtemp(join(tmpdir(), 'rg-passwd-file-'));
  try {
    const opts = { backend: 'passwd-file' as const, timeoutMs: 5000, logger: silentLogger(), clock: systemClock };
    const isAuthErr = (re: RegExp) => (e: unknown) => e instanceof RelaygateError && e.code === 'RG_ERR_AUTH_BACKEND' && re.test(e.message);
    await assert.rejects(createBackend({ ...opts, path: join(dir2, 'missing') }), isAuthErr(/ENOENT/));
    await assert.rejects(createBackend({ ...opts, path: dir2 }), isAuthErr(/not a regular file/));
    if (process.getuid?.() !== 0) {
      await writeFile(join(dir2, 'secret'), 'a:{PLAIN}b\n');
      await chmod(join(dir2, 'secret'), 0);
      await assert.rejects(createBackend({ ...opts, path: join(dir2, 'secret') }), isAuthErr(/EACCES/));
    }
    await assert.rejects(createBackend({ ...opts, path: '' }), isAuthErr(/path is required/));
    await assert.rejects(createBackend({ ...opts, path: join(dir2, 'x'), timeoutMs: 0 }), isAuthErr(/timeout/));
  } finally {
    await rm(dir2, { recursive: true, force: true });
  }
});

test('after close() every login is tempfail', async () => {
  const dir2 = await mkdtemp(join(tmpdir(), 'rg-passwd-file-'));
  await writeFile(join(dir2, 'users'), `a:{PLAIN}${PW}\n`);
  const b = await PasswdFileBackend.open({ path: join(dir2, 'users'), timeoutMs: 5000, logger: silentLogger(), clock: systemClock });
  await b.close();
  assert.equal((await b.authenticate(req('a', PW))).outcome, 'tempfail');
  await rm(dir2, { recursive: true, force: true });
});
