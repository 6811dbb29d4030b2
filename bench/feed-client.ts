// Load client for the `feed` benchmark, run as its own process (so it does not share a CPU budget with the
// server's event loop): `tsx bench/feed-client.ts URL KEY_ID SECRET BATCH CONNECTIONS SECONDS`.
// CONNECTIONS keep-alive connections each send signed `POST /v1/logins` requests back to back (a fresh
// timestamp and nonce every time, BATCH logins per request, a new IP per login) for a 0.3 s warm-up plus
// SECONDS; prints one JSON line {requests, logins, seconds, errors, statuses}. Loopback URLs only.
// Security: scratch data; refuses a non-loopback URL.

import http from 'node:http';
import { signRequest } from '../src/feeds/hmac.ts';

const [url, keyId, secret, batchText, connText, secondsText] = process.argv.slice(2);
if (!url || !keyId || !secret) {
  process.stderr.write('usage: feed-client.ts URL KEY_ID SECRET BATCH CONNECTIONS SECONDS\n');
  process.exit(64);
}
const target = new URL(url);
if (!/^127\.|^\[::1\]$/.test(target.hostname)) {
  process.stderr.write(`feed-client: ${target.hostname} is not loopback\n`);
  process.exit(64);
}
const batch = Number(batchText ?? 1);
const connections = Number(connText ?? 8);
const seconds = Number(secondsText ?? 3);
const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
let counter = 0;

function ip(): string {
  const k = counter++;
  return `10.${(k >> 16) & 255}.${(k >> 8) & 255}.${(k & 255) || 1}`;
}

function once(): Promise<number> {
  const logins = Array.from({ length: batch }, () => ({ ip: ip(), user: 'bench', service: 'pop3' }));
  const body = JSON.stringify(batch === 1 ? logins[0] : { logins });
  const headers = { ...signRequest({ keyId: keyId!, secret: secret!, path: target.pathname, body, now: Date.now() }), 'content-length': String(Buffer.byteLength(body)) };
  return new Promise((done) => {
    const req = http.request({ host: target.hostname, port: Number(target.port), path: target.pathname, method: 'POST', headers, agent }, (res) => {
      res.resume();
      res.on('end', () => done(res.statusCode ?? 0));
    });
    req.on('error', () => done(0));
    req.end(body);
  });
}

const statuses: Record<string, number> = {};
let requests = 0;
let errors = 0;
let measuring = false;
const warmEnd = Date.now() + 300;
const end = warmEnd + seconds * 1000;
let started = 0;

async function worker(): Promise<void> {
  // bounded in count as well as in time
  for (let i = 0; i < 10_000_000 && Date.now() < end; i++) {
    const s = await once();
    if (!measuring && Date.now() >= warmEnd) {
      measuring = true;
      started = performance.now();
    }
    if (!measuring) continue;
    requests++;
    statuses[s] = (statuses[s] ?? 0) + 1;
    if (s !== 200) errors++;
  }
}

await Promise.all(Array.from({ length: connections }, () => worker()));
const elapsed = (performance.now() - started) / 1000;
agent.destroy();
process.stdout.write(`${JSON.stringify({ requests, logins: requests * batch, seconds: elapsed, errors, statuses })}\n`);
