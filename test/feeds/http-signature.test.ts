// The HTTP feed's request signing (src/feeds/hmac.ts): the canonical string byte for byte, HMAC-SHA256
// against an independent computation (openssl, the README recipe), every header check, key rotation, the
// timestamp window and the nonce memory (replay refused, expiry, bounded size, per feeder).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { run } from '../helpers/proc.ts';
import {
  canonicalBytes,
  signature,
  signRequest,
  verifyRequest,
  NonceMemory,
  TIMESTAMP_WINDOW_S,
  type FeederKeys,
} from '../../src/feeds/hmac.ts';
import { feederKeys } from '../../src/feeds/http-feed.ts';

const SECRET = 'k'.repeat(40);
const OLD = 'o'.repeat(40);
const NOW = Date.UTC(2026, 10, 21, 16, 33, 39);
const BODY = '{"ip":"192.0.2.7","user":"alice","service":"pop3"}';

const keys: FeederKeys = feederKeys({ pop1: SECRET, pop2: [SECRET.replace(/k/g, 'n'), OLD] });

function signed(over: Partial<{ keyId: string; secret: string; path: string; body: string; now: number; nonce: string; method: string }> = {}) {
  const o = { keyId: 'pop1', secret: SECRET, path: '/v1/logins', body: BODY, now: NOW, nonce: 'n0nce-0123456789abcdef', ...over };
  return { headers: signRequest(o), body: Buffer.from(o.body) };
}

function verify(h: Record<string, string>, body: Buffer, o: { now?: number; path?: string; method?: string; nonces?: NonceMemory } = {}) {
  return verifyRequest(keys, o.nonces ?? new NonceMemory(), { method: o.method ?? 'POST', path: o.path ?? '/v1/logins', headers: h, body, now: o.now ?? NOW });
}

test('the canonical string is the documented lines, body last, byte for byte', () => {
  const bytes = canonicalBytes({ method: 'post', path: '/v1/logins', keyId: 'pop1', timestamp: '1795286019', nonce: 'abcdefABCDEF0123', body: BODY });
  assert.equal(bytes.toString('utf8'), `relaygate-v1\nPOST\n/v1/logins\npop1\n1795286019\nabcdefABCDEF0123\n${BODY}`);
  const expected = createHmac('sha256', SECRET).update(bytes).digest('hex');
  assert.equal(signature(SECRET, { method: 'POST', path: '/v1/logins', keyId: 'pop1', timestamp: '1795286019', nonce: 'abcdefABCDEF0123', body: BODY }), `v1=${expected}`);
});

test('the README recipe (printf | openssl dgst -hmac) computes the same signature', async () => {
  const ts = String(Math.floor(NOW / 1000));
  const nonce = 'f'.repeat(32);
  const script = `{ printf 'relaygate-v1\\nPOST\\n/v1/logins\\n%s\\n%s\\n%s\\n' "$KEY_ID" "$TS" "$NONCE"; printf '%s' "$BODY"; } | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1`;
  const r = await run('bash', ['-c', script], { env: { ...process.env, KEY_ID: 'pop1', TS: ts, NONCE: nonce, BODY, SECRET } });
  assert.equal(r.code, 0, r.stderr);
  const h = signRequest({ keyId: 'pop1', secret: SECRET, path: '/v1/logins', body: BODY, now: NOW, nonce });
  assert.equal(`v1=${r.stdout.trim()}`, h['x-relaygate-signature']);
});

test('a correctly signed request passes and names its feeder and key slot', () => {
  const { headers, body } = signed();
  assert.deepEqual(verify(headers, body), { ok: true, keyId: 'pop1', slot: 0 });
});

test('rotation: either of a feeder\'s two secrets is accepted, and the slot says which', () => {
  const { headers, body } = signed({ keyId: 'pop2', secret: OLD });
  assert.deepEqual(verify(headers, body), { ok: true, keyId: 'pop2', slot: 1 });
  const fresh = signed({ keyId: 'pop2', secret: SECRET.replace(/k/g, 'n'), nonce: 'another-nonce-0123456' });
  assert.deepEqual(verify(fresh.headers, fresh.body), { ok: true, keyId: 'pop2', slot: 0 });
});

test('table: every tampering is refused with its reason', () => {
  const cases: Array<[string, () => ReturnType<typeof verify>, string]> = [
    ['body changed', () => { const s = signed(); return verify(s.headers, Buffer.from(BODY.replace('alice', 'mallory'))); }, 'bad_signature'],
    ['wrong secret', () => { const s = signed({ secret: 'x'.repeat(40) }); return verify(s.headers, s.body); }, 'bad_signature'],
    ['other feeder\'s secret', () => { const s = signed({ keyId: 'pop2', secret: SECRET }); return verify(s.headers, s.body); }, 'bad_signature'],
    ['unknown key id', () => { const s = signed({ keyId: 'pop9' }); return verify(s.headers, s.body); }, 'unknown_key'],
    ['other path (cross-endpoint replay)', () => { const s = signed(); return verify(s.headers, s.body, { path: '/v2/logins' }); }, 'bad_signature'],
    ['other method', () => { const s = signed(); return verify(s.headers, s.body, { method: 'PUT' }); }, 'bad_signature'],
    ['key id relabelled', () => { const s = signed(); return verify({ ...s.headers, 'x-relaygate-key-id': 'pop2' }, s.body); }, 'bad_signature'],
    ['nonce changed', () => { const s = signed(); return verify({ ...s.headers, 'x-relaygate-nonce': 'zzzzzzzzzzzzzzzzzz' }, s.body); }, 'bad_signature'],
    ['timestamp changed', () => { const s = signed(); return verify({ ...s.headers, 'x-relaygate-timestamp': String(NOW / 1000 + 1) }, s.body); }, 'bad_signature'],
    ['timestamp 61 s old', () => { const s = signed({ now: NOW - (TIMESTAMP_WINDOW_S + 1) * 1000 }); return verify(s.headers, s.body); }, 'stale_timestamp'],
    ['timestamp 61 s ahead', () => { const s = signed({ now: NOW + (TIMESTAMP_WINDOW_S + 1) * 1000 }); return verify(s.headers, s.body); }, 'stale_timestamp'],
    ['signature header missing', () => { const s = signed(); const { ['x-relaygate-signature']: _, ...h } = s.headers; return verify(h, s.body); }, 'missing_headers'],
    ['signature without v1=', () => { const s = signed(); return verify({ ...s.headers, 'x-relaygate-signature': s.headers['x-relaygate-signature']!.slice(3) }, s.body); }, 'malformed_headers'],
    ['nonce too short', () => { const s = signed({ nonce: 'short' }); return verify(s.headers, s.body); }, 'malformed_headers'],
    ['timestamp not decimal', () => { const s = signed(); return verify({ ...s.headers, 'x-relaygate-timestamp': '1e9' }, s.body); }, 'malformed_headers'],
    ['key id with a space', () => { const s = signed(); return verify({ ...s.headers, 'x-relaygate-key-id': 'pop 1' }, s.body); }, 'malformed_headers'],
  ];
  for (const [name, fn, why] of cases) {
    const r = fn();
    assert.equal(r.ok, false, name);
    assert.equal(!r.ok && r.why, why, name);
  }
});

test('timestamps within ±60 s pass; an upper-case hex signature is the same signature', () => {
  for (const skew of [-TIMESTAMP_WINDOW_S, -1, 0, 1, TIMESTAMP_WINDOW_S]) {
    const s = signed({ now: NOW + skew * 1000, nonce: `nonce-for-skew-${skew + 100}` });
    assert.equal(verify(s.headers, s.body).ok, true, `skew ${skew}`);
  }
  const s = signed();
  assert.equal(verify({ ...s.headers, 'x-relaygate-signature': `v1=${s.headers['x-relaygate-signature']!.slice(3).toUpperCase()}` }, s.body).ok, true);
});

test('a replayed request is refused for as long as its timestamp is acceptable, per feeder', () => {
  const nonces = new NonceMemory();
  const s = signed();
  assert.equal(verify(s.headers, s.body, { nonces }).ok, true);
  const again = verify(s.headers, s.body, { nonces, now: NOW + 30_000 });
  assert.equal(!again.ok && again.why, 'replay');
  // past the window the timestamp itself refuses it
  const late = verify(s.headers, s.body, { nonces, now: NOW + 61_000 });
  assert.equal(!late.ok && late.why, 'stale_timestamp');
  // the same nonce from another feeder is that feeder's business
  const other = signed({ keyId: 'pop2', secret: OLD });
  assert.equal(verify(other.headers, other.body, { nonces }).ok, true);
  // a refused (forged) request does not burn its nonce
  const forged = signed({ nonce: 'forged-nonce-0123456', secret: 'y'.repeat(40) });
  assert.equal(verify(forged.headers, forged.body, { nonces }).ok, false);
  const genuine = signed({ nonce: 'forged-nonce-0123456' });
  assert.equal(verify(genuine.headers, genuine.body, { nonces }).ok, true);
});

test('nonce memory: expired nonces are pruned; when full of live ones, new requests are refused, never old nonces forgotten', () => {
  const m = new NonceMemory(3, 60_000);
  assert.equal(m.remember('a', 'n1', NOW, NOW), 'new');
  assert.equal(m.remember('a', 'n2', NOW, NOW), 'new');
  assert.equal(m.remember('a', 'n3', NOW, NOW), 'new');
  assert.equal(m.remember('a', 'n4', NOW, NOW + 1000), 'full');
  assert.equal(m.remember('a', 'n1', NOW, NOW + 1000), 'seen');
  assert.equal(m.remember('b', 'n4', NOW, NOW + 1000), 'new', 'another feeder has its own memory');
  // after ts + window + 1 s every nonce has expired: room again, and n1 is accepted (its timestamp check refuses it anyway)
  assert.equal(m.remember('a', 'n5', NOW + 70_000, NOW + 62_000), 'new');
  assert.equal(m.size('a'), 1);
});
