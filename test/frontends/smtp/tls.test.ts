// TLS at the gateway: STARTTLS on the smtp and submission roles, implicit TLS on submissions (swaks and the
// raw client), the generated self-signed pair in <data_dir>/tls (0600 key, logged as self-signed, never
// smtp-server's published default certificate), a configured pair, reloadTls() with a good and a broken
// pair, and RFC 3207: what a client established before STARTTLS (its AUTH) does not survive the upgrade.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startHarness, type Harness } from '../../helpers/smtp-gateway.ts';
import { SmtpClient, plain } from '../../helpers/smtp-client.ts';
import { requireSwaks, swaks } from '../../helpers/smtp-swaks.ts';
import tlsOptions from 'smtp-server/lib/tls-options.js';

const exec = promisify(execFile);
let h: Harness;

before(async () => {
  await requireSwaks();
  h = await startHarness({ loopbackIsLocal: false });
});
after(async () => {
  await h?.close();
});

function fingerprint(pem: Buffer | string): string {
  return new X509Certificate(pem).fingerprint256;
}

test('no tls_cert configured: a self-signed pair is generated into <data_dir>/tls (key 0600, dir 0700) and logged as SELF-SIGNED', async () => {
  const dir = join(h.rt.config.data_dir, 'tls');
  assert.equal((await stat(join(dir, 'key.pem'))).mode & 0o777, 0o600);
  assert.equal((await stat(dir)).mode & 0o777, 0o700);
  const cert = await readFile(join(dir, 'cert.pem'));
  assert.match(new X509Certificate(cert).subject, /CN=gw\.test/);
  await h.waitLog(/SELF-SIGNED TLS certificate for gw\.test/);
  const c = await SmtpClient.connect({ port: h.port('submissions'), tls: true });
  assert.equal(c.peerFingerprint(), fingerprint(cert));
  const builtIn = (tlsOptions as unknown as (o?: object) => { cert: string })({}).cert;
  assert.notEqual(c.peerFingerprint(), fingerprint(builtIn), "never smtp-server's published default certificate");
  await c.quit();
});

test('STARTTLS on smtp and submission (swaks --tls), implicit TLS on submissions (swaks --tls-on-connect), AUTH only inside TLS', async () => {
  for (const role of ['smtp', 'submission'] as const) {
    const r = await swaks({ port: h.port(role), localAddress: '127.0.0.90', from: 'alice@local.example', to: `tls-${role}@remote.example`, args: ['--tls', '--auth', 'PLAIN', '--auth-user', 'alice', '--auth-password', 'alice-secret'] });
    assert.equal(r.code, 0, r.transcript + r.stderr);
    assert.match(r.transcript, /=== TLS started with cipher/);
  }
  const r = await swaks({ port: h.port('submissions'), tlsOnConnect: true, localAddress: '127.0.0.90', from: 'alice@local.example', to: 'tls-submissions@remote.example', args: ['--auth', 'LOGIN', '--auth-user', 'alice', '--auth-password', 'alice-secret'] });
  assert.equal(r.code, 0, r.transcript + r.stderr);
  for (const role of ['smtp', 'submission', 'submissions']) {
    const m = h.sink.messages.find((x) => x.to.includes(`tls-${role}@remote.example`));
    assert.ok(m, role);
    assert.match(m.data.toString(), / with ESMTPSA id /, role);
  }
});

test('EHLO: STARTTLS offered before TLS on smtp/submission, never on submissions; AUTH only after TLS for a remote client', async () => {
  for (const role of ['smtp', 'submission'] as const) {
    const c = await SmtpClient.connect({ port: h.port(role), localAddress: '127.0.0.91' });
    const e = await c.cmd('EHLO tls.test');
    assert.ok(e.lines.includes('STARTTLS'), e.raw);
    assert.ok(!e.lines.some((l) => l.startsWith('AUTH')), e.raw);
    await c.quit();
  }
  const s = await SmtpClient.connect({ port: h.port('submissions'), localAddress: '127.0.0.91', tls: true });
  const e = await s.cmd('EHLO tls.test');
  assert.ok(!e.lines.includes('STARTTLS'), e.raw);
  assert.ok(e.lines.includes('AUTH PLAIN LOGIN'), e.raw);
  assert.equal((await s.cmd('STARTTLS')).code, 503);
  await s.quit();
});

test('RFC 3207: an AUTH made before STARTTLS does not survive the upgrade', async (t) => {
  const l = await startHarness({ roles: ['smtp'] }); // loopback may AUTH in plaintext
  t.after(() => l.close());
  const c = await SmtpClient.connect({ port: l.port('smtp'), localAddress: '127.0.0.92' });
  await c.cmd('EHLO x.test');
  assert.equal((await c.cmd(`AUTH PLAIN ${plain('', 'alice', 'alice-secret')}`)).code, 235);
  await c.starttls();
  await c.cmd('EHLO x.test');
  await c.cmd('MAIL FROM:<alice@local.example>');
  assert.equal((await c.cmd('RCPT TO:<x@remote.example>')).code, 554, 'no longer authenticated');
  await c.quit();
});

async function makePair(dir: string, cn: string): Promise<{ key: string; cert: string }> {
  const key = join(dir, `${cn}.key`);
  const cert = join(dir, `${cn}.crt`);
  await exec('openssl', ['req', '-x509', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${cn}`], { timeout: 20_000 });
  return { key, cert };
}

test('configured tls_cert/tls_key are served; reloadTls() swaps them; a broken pair on reload keeps the old one', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rg-tls-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const one = await makePair(dir, 'one.test');
  const two = await makePair(dir, 'two.test');
  const live = { key: join(dir, 'live.key'), cert: join(dir, 'live.crt') };
  await writeFile(live.key, await readFile(one.key));
  await writeFile(live.cert, await readFile(one.cert));
  const g = await startHarness({ roles: ['submissions', 'smtp'], smtp: `tls_cert = ${JSON.stringify(live.cert)}\ntls_key = ${JSON.stringify(live.key)}` });
  t.after(() => g.close());
  const served = async () => {
    const c = await SmtpClient.connect({ port: g.port('submissions'), tls: true });
    const f = c.peerFingerprint();
    await c.quit();
    return f;
  };
  const starttlsServed = async () => {
    const c = await SmtpClient.connect({ port: g.port('smtp') });
    await c.cmd('EHLO x.test');
    await c.starttls();
    const f = c.peerFingerprint();
    await c.quit();
    return f;
  };
  assert.equal(await served(), fingerprint(await readFile(one.cert)));
  assert.ok(!g.logs.some((l) => /SELF-SIGNED/.test(l)));
  await writeFile(live.key, await readFile(two.key));
  await writeFile(live.cert, await readFile(two.cert));
  await g.gateway.reloadTls();
  assert.equal(await served(), fingerprint(await readFile(two.cert)));
  assert.equal(await starttlsServed(), fingerprint(await readFile(two.cert)));
  await g.waitLog(/^smtp: TLS certificate reloaded from /);
  // a key that does not match the certificate: refused, the running pair stays
  await writeFile(live.key, await readFile(one.key));
  await g.gateway.reloadTls();
  await g.waitLog(/^smtp: TLS reload failed, keeping the current certificate: /);
  assert.equal(await served(), fingerprint(await readFile(two.cert)));
});
