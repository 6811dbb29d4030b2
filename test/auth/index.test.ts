// The backend registry: every row has its source file, its test file and a doc line; unknown names and
// bad common options are start-up errors.
//
// Debian packages: none.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import { BACKENDS, createBackend, type BackendName } from '../../src/auth/index.ts';
import { RelaygateError } from '../../src/errors.ts';
import { systemClock } from '../../src/clock.ts';
import { silentLogger } from '../../src/log/logger.ts';

test('every registry row has src/auth/<file>, test/auth/<name>.test.ts and a doc line', async () => {
  assert.deepEqual(Object.keys(BACKENDS).sort(), ['dovecot', 'passwd-file', 'saslauthd']);
  for (const [name, row] of Object.entries(BACKENDS)) {
    await access(new URL(`../../src/auth/${row.file}`, import.meta.url));
    await access(new URL(`./${row.file.replace(/\.ts$/, '.test.ts')}`, import.meta.url));
    assert.ok(row.doc.length > 20, name);
  }
});

test('unknown backend, bad timeout or empty path: RG_ERR_AUTH_BACKEND before anything is opened', async () => {
  const base = { path: '/nonexistent', timeoutMs: 1000, logger: silentLogger(), clock: systemClock };
  const isErr = (re: RegExp) => (e: unknown) => e instanceof RelaygateError && e.code === 'RG_ERR_AUTH_BACKEND' && re.test(e.message);
  await assert.rejects(createBackend({ ...base, backend: 'ldap' as BackendName }), isErr(/unknown SASL backend "ldap"/));
  await assert.rejects(createBackend({ ...base, backend: '__proto__' as BackendName }), isErr(/unknown SASL backend/));
  for (const timeoutMs of [0, -5, 1.5, 700_000, Number.NaN]) {
    await assert.rejects(createBackend({ ...base, backend: 'dovecot', timeoutMs }), isErr(/timeout/), String(timeoutMs));
  }
  await assert.rejects(createBackend({ ...base, backend: 'saslauthd', path: '' }), isErr(/path is required/));
});

test('AUTH_REPLIES: a backend failure of our own is 454 (retry), never 535 or 2xx', async () => {
  const { AUTH_REPLIES } = await import('../../src/auth/index.ts');
  assert.equal(AUTH_REPLIES.tempfail.code, 454);
  assert.match(AUTH_REPLIES.tempfail.text, /^4\.7\.0 Temporary authentication failure/);
  assert.equal(AUTH_REPLIES.lockout.code, 421);
  assert.match(AUTH_REPLIES.lockout.text, /^4\.7\.0 /);
  assert.equal(AUTH_REPLIES.fail.code, 535);
  assert.equal(AUTH_REPLIES.ok.code, 235);
});
