// Helpers for the signed HTTP feed tests: curl requests (signed with the project's signer, or with a
// forged/old/replayed signature), a self-signed certificate made by openssl, and a logger whose lines the
// test can read. Loopback only, IP literals only; every command is bounded in time (curl --max-time,
// run()'s kill timer).
import { Writable } from 'node:stream';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createLogger, type Logger } from '../../src/log/logger.ts';
import { signRequest } from '../../src/feeds/hmac.ts';
import { run, runOk } from './proc.ts';

export interface CurlAnswer {
  status: number;
  body: string;
  json: unknown;
}

/** `curl` a request and return the HTTP status and body (status 0: curl itself failed, body = its error). */
export async function curlFeed(url: string, o: { headers?: Record<string, string>; body?: string; bodyFile?: string; method?: string; cacert?: string; extra?: string[] } = {}): Promise<CurlAnswer> {
  const args = ['-sS', '-g', '--max-time', '10', '-o', '-', '-w', '\n%{http_code}', '-X', o.method ?? 'POST'];
  for (const [k, v] of Object.entries(o.headers ?? {})) args.push('-H', `${k}: ${v}`);
  if (o.bodyFile !== undefined) args.push('--data-binary', `@${o.bodyFile}`);
  else if (o.body !== undefined) args.push('--data-binary', o.body);
  if (o.cacert !== undefined) args.push('--cacert', o.cacert);
  args.push(...(o.extra ?? []), url);
  const r = await run('curl', args, { timeoutMs: 15_000 });
  if (r.code !== 0) return { status: 0, body: r.stderr.trim(), json: undefined };
  const cut = r.stdout.lastIndexOf('\n');
  const body = r.stdout.slice(0, cut);
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    json = undefined;
  }
  return { status: Number(r.stdout.slice(cut + 1)), body, json };
}

/** Headers of a correctly signed request (the signer under test; the signature test pins it to openssl). */
export function signedHeaders(keyId: string, secret: string, body: string, o: { now?: number; nonce?: string; path?: string } = {}): Record<string, string> {
  return signRequest({ keyId, secret, path: o.path ?? '/v1/logins', body, now: o.now ?? Date.now(), ...(o.nonce === undefined ? {} : { nonce: o.nonce }) });
}

/** A self-signed EC certificate for `ip` (subjectAltName IP:ip), written to dir/cert.pem and dir/key.pem. */
export async function selfSignedCert(dir: string, ip: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  await runOk('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', `/CN=${ip}`, '-addext', `subjectAltName=IP:${ip}`, '-keyout', key, '-out', cert,
  ], { timeoutMs: 20_000 });
  return { cert, key };
}

/** A logger writing JSON lines into memory, and a reader of those lines. */
export function memoryLogger(level: 'debug' | 'info' = 'debug'): { logger: Logger; events: () => Array<Record<string, unknown>> } {
  let out = '';
  const stream = new Writable({
    write(chunk, _enc, cb) {
      out += String(chunk);
      cb();
    },
  });
  const logger = createLogger({ destination: stream, level });
  const events = () =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { logger, events };
}

export async function writeBody(dir: string, name: string, body: string): Promise<string> {
  const f = join(dir, name);
  await writeFile(f, body);
  return f;
}
