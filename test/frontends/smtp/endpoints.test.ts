// Listener and relayhost addresses (IP literals only, Postfix's bracket forms) and the gateway's start-up
// check: a configuration without a relayhost, with a bad listen address or half a TLS pair starts nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseEndpoint, gatewayConfigProblems, startGateway, aLabelAddress } from '../../../src/frontends/smtp/index.ts';
import { configSchema, type Config } from '../../../src/config/index.ts';
import { silentLogger } from '../../../src/log/logger.ts';
import { isRelaygateError } from '../../../src/errors.ts';

test('parseEndpoint: IPv4, bracketed IPv4 and IPv6, default port; hostnames and junk refused', () => {
  const ok: Array<[string, object, { host: string; port: number }]> = [
    ['127.0.0.1:2525', {}, { host: '127.0.0.1', port: 2525 }],
    ['[127.0.0.1]:25', {}, { host: '127.0.0.1', port: 25 }],
    ['[::1]:587', {}, { host: '::1', port: 587 }],
    ['[0:0:0:0:0:0:0:1]:587', {}, { host: '::1', port: 587 }],
    ['[::ffff:127.0.0.1]:25', {}, { host: '127.0.0.1', port: 25 }],
    ['192.0.2.1', { defaultPort: 25 }, { host: '192.0.2.1', port: 25 }],
    ['[192.0.2.1]', { defaultPort: 25 }, { host: '192.0.2.1', port: 25 }],
    ['127.0.0.1:0', { allowPortZero: true }, { host: '127.0.0.1', port: 0 }],
  ];
  for (const [text, o, want] of ok) assert.deepEqual(parseEndpoint(text, o), want, text);
  const bad: Array<[string, object]> = [
    ['mail.example.com:25', {}],
    ['localhost:25', {}],
    ['::1:25', {}],
    ['127.0.0.1', {}],
    ['127.0.0.1:0', {}],
    ['127.0.0.1:65536', {}],
    ['127.0.0.1:2x', {}],
    [' 127.0.0.1:25', {}],
    ['[fe80::1%eth0]:25', {}],
    ['', {}],
  ];
  for (const [text, o] of bad) assert.equal(typeof parseEndpoint(text, o), 'string', text);
});

function config(over: Record<string, unknown>): Config {
  return configSchema.parse(over) as Config;
}

test('gatewayConfigProblems: every problem at once; nothing when no [[listen]]', () => {
  assert.deepEqual(gatewayConfigProblems(config({})), []);
  const p = gatewayConfigProblems(
    config({
      listen: [
        { address: 'mx.example:25', role: 'smtp' },
        { address: '127.0.0.1:2525', role: 'smtp' },
        { address: '127.0.0.1:2525', role: 'submission' },
      ],
      smtp: { tls_cert: '/x.pem' },
      auth: { backend: 'passwd-file' },
    }),
  );
  assert.equal(p.length, 5, p.join('\n'));
  assert.match(p.join('\n'), /listen\[0\]\.address: "mx\.example" is not an IP address literal/);
  assert.match(p.join('\n'), /listen\[2\]\.address: 127\.0\.0\.1:2525 is already used by listen\[1\]/);
  assert.match(p.join('\n'), /smtp\.relayhost: required/);
  assert.match(p.join('\n'), /smtp\.tls_cert \/ smtp\.tls_key: set both/);
  assert.match(p.join('\n'), /auth\.path: required/);
});

test('startGateway refuses an incomplete configuration with RG_ERR_CONFIG_INVALID before listening', async () => {
  await assert.rejects(
    startGateway({
      config: config({ listen: [{ address: '127.0.0.1:0', role: 'smtp' }] }),
      engine: { decide: async () => assert.fail('no decision'), close: async () => undefined, describe: () => ({ relay: [], sender: [] }) },
      grants: { lookup: async () => undefined },
      logger: silentLogger(),
      clock: Date.now,
      dataDir: '/nonexistent',
    }),
    (err: unknown) => isRelaygateError(err) && err.code === 'RG_ERR_CONFIG_INVALID' && err.details.some((d) => d.startsWith('smtp.relayhost: required')),
  );
});

test('aLabelAddress: Unicode domains back to A-labels; ASCII, literals and local parts untouched', () => {
  assert.equal(aLabelAddress('bob@münchen.example'), 'bob@xn--mnchen-3ya.example');
  assert.equal(aLabelAddress('bob@example.com'), 'bob@example.com');
  assert.equal(aLabelAddress('bøb@example.com'), 'bøb@example.com');
  assert.equal(aLabelAddress('bob@[192.0.2.1]'), 'bob@[192.0.2.1]');
  assert.equal(aLabelAddress('postmaster'), 'postmaster');
  assert.equal(aLabelAddress(''), '');
});
