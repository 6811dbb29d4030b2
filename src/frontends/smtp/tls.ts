// The gateway's TLS key and certificate: read from `smtp.tls_key` / `smtp.tls_cert`, or, when neither is
// configured, a self-signed pair generated once into `<data_dir>/tls/` and reused afterwards.
//
// Why openssl: Node 20's crypto makes keys but has no X.509 builder, and smtp-server's built-in default
// certificate must never be used (its private key is published in smtp-server's source tree, so anyone
// could read "encrypted" sessions). `openssl req -x509` is in every Debian base image; when it is missing
// the gateway refuses to start and names the keys to set.
// A self-signed certificate is logged as such at every start: clients that verify will refuse it, which is
// the honest outcome (submission clients are told to accept it or the operator installs a real one).
//
// Security: the generated key is written 0600 inside a 0700 directory, to a temporary name first and then
// renamed, so a crash never leaves a half-written key that a later start would load. Loaded material is
// checked with tls.createSecureContext() before use, so reloadTls() with a broken file keeps the old pair.

import { execFile } from 'node:child_process';
import { chmod, mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import { RelaygateError } from '../../errors.ts';
import type { Logger } from '../../log/logger.ts';

export interface TlsMaterial {
  readonly key: Buffer;
  readonly cert: Buffer;
  readonly keyPath: string;
  readonly certPath: string;
  readonly selfSigned: boolean;
}

export interface TlsSource {
  readonly tlsKey?: string | undefined;
  readonly tlsCert?: string | undefined;
  readonly dataDir: string;
  /** the name put into a generated certificate */
  readonly hostname: string;
}

/** Loads the configured pair, or the generated one (generating it on first use). */
export async function loadTlsMaterial(src: TlsSource, logger: Logger): Promise<TlsMaterial> {
  if (src.tlsKey !== undefined && src.tlsCert !== undefined) {
    const keyPath = resolve(src.tlsKey);
    const certPath = resolve(src.tlsCert);
    const m = await readPair(keyPath, certPath, false);
    return m;
  }
  const dir = resolve(src.dataDir, 'tls');
  const keyPath = join(dir, 'key.pem');
  const certPath = join(dir, 'cert.pem');
  if (!(await exists(keyPath)) || !(await exists(certPath))) {
    await generateSelfSigned(dir, keyPath, certPath, src.hostname);
    logger.warn({ event: 'tls_generated', key_file: keyPath, cert_file: certPath }, `smtp: generated a SELF-SIGNED TLS certificate for ${safeName(src.hostname)} in ${dir}; clients that verify certificates will refuse it: set smtp.tls_cert and smtp.tls_key to a real certificate`);
  }
  const m = await readPair(keyPath, certPath, true);
  logger.warn({ event: 'tls_self_signed', cert_file: certPath }, `smtp: TLS uses the SELF-SIGNED certificate ${certPath} (no smtp.tls_cert configured)`);
  return m;
}

async function readPair(keyPath: string, certPath: string, selfSigned: boolean): Promise<TlsMaterial> {
  let key: Buffer;
  let cert: Buffer;
  try {
    [key, cert] = await Promise.all([readFile(keyPath), readFile(certPath)]);
  } catch (err) {
    throw new RelaygateError('RG_ERR_CONFIG_INVALID', `smtp TLS: cannot read ${keyPath} / ${certPath}: ${(err as Error).message}`, {
      details: ['smtp.tls_key / smtp.tls_cert: the files must exist and be readable by relaygate'],
    });
  }
  try {
    // Throws on a malformed PEM or a key that does not match the certificate.
    createSecureContext({ key, cert });
  } catch (err) {
    throw new RelaygateError('RG_ERR_CONFIG_INVALID', `smtp TLS: ${certPath} / ${keyPath} are not a usable key and certificate: ${(err as Error).message}`, {
      details: ['smtp.tls_key / smtp.tls_cert: PEM private key and the certificate that matches it'],
    });
  }
  return { key, cert, keyPath, certPath, selfSigned };
}

/** A name that is safe inside an openssl -subj and a subjectAltName. */
function safeName(hostname: string): string {
  return /^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/.test(hostname) ? hostname : 'localhost';
}

async function generateSelfSigned(dir: string, keyPath: string, certPath: string, hostname: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new RelaygateError('RG_ERR_CONFIG_INVALID', `smtp TLS: no certificate configured and the directory for a generated one, ${dir}, cannot be created (${code})`, {
      details: ['data_dir: a directory the relaygate user can write (e.g. /var/lib/relaygate), or set smtp.tls_cert and smtp.tls_key'],
    });
  }
  const name = safeName(hostname);
  const tmpKey = `${keyPath}.${process.pid}.tmp`;
  const tmpCert = `${certPath}.${process.pid}.tmp`;
  // P-256: generated in milliseconds and accepted by every TLS client still in use.
  const args = [
    'req', '-x509', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
    '-keyout', tmpKey, '-out', tmpCert, '-days', '3650', '-subj', `/CN=${name}`,
    '-addext', `subjectAltName=DNS:${name}`,
  ];
  try {
    await new Promise<void>((res, rej) => {
      // execFile: no shell; bounded in time; umask-independent mode is fixed below.
      execFile('openssl', args, { timeout: 30_000 }, (err, _stdout, stderr) => (err ? rej(new Error(`${err.message} ${String(stderr).trim()}`)) : res()));
    });
    await chmod(tmpKey, 0o600);
    await rename(tmpCert, certPath);
    await rename(tmpKey, keyPath);
  } catch (err) {
    await Promise.allSettled([rm(tmpKey, { force: true }), rm(tmpCert, { force: true })]);
    throw new RelaygateError('RG_ERR_CONFIG_INVALID', `smtp TLS: no certificate configured and generating a self-signed one with openssl failed: ${(err as Error).message}`, {
      details: ['smtp.tls_cert / smtp.tls_key: set them to a PEM certificate and key, or install openssl (Debian: apt-get install openssl)'],
    });
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
