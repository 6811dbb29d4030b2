// swaks (Debian package `swaks`, TLS through `libnet-ssleay-perl`) as the real SMTP client of the gateway
// tests. Missing swaks is a test FAILURE naming the package, never a skip: CI installs it.
// Before swaks talks, the server's greeting is checked with a raw connection (network rules: never send to
// a port without knowing what answers there). `--local-interface` makes each 127.x address its own client.
import { run, type RunResult } from './proc.ts';
import { SmtpClient } from './smtp-client.ts';

let checked: Promise<void> | undefined;

/** Throws unless swaks with TLS support is installed. */
export function requireSwaks(): Promise<void> {
  checked ??= (async () => {
    let r: RunResult;
    try {
      r = await run('swaks', ['--support'], { timeoutMs: 20_000 });
    } catch {
      throw new Error('swaks is not installed: run `apt-get install -y swaks libnet-ssleay-perl` (the SMTP gateway tests use it as their real SMTP client; CI installs it)');
    }
    const out = r.stdout + r.stderr;
    if (!/TLS supported/.test(out)) throw new Error('swaks has no TLS support: run `apt-get install -y libnet-ssleay-perl`');
  })();
  return checked;
}

export interface SwaksResult extends RunResult {
  /** the SMTP transcript swaks printed (its stdout) */
  readonly transcript: string;
}

export interface SwaksOptions {
  port: number;
  host?: string;
  localAddress?: string;
  from?: string;
  to?: string | string[];
  /** extra swaks arguments, e.g. ['--auth', 'PLAIN', '--auth-user', 'alice', '--auth-password', 'x'] */
  args?: string[];
  /** implicit TLS: skip the plaintext greeting probe, probe over TLS instead */
  tlsOnConnect?: boolean;
  timeoutMs?: number;
}

export async function swaks(o: SwaksOptions): Promise<SwaksResult> {
  await requireSwaks();
  const host = o.host ?? '127.0.0.1';
  const probe = await SmtpClient.connect({ host, port: o.port, ...(o.localAddress ? { localAddress: o.localAddress } : {}), tls: o.tlsOnConnect === true });
  await probe.quit();
  const to = o.to === undefined ? [] : Array.isArray(o.to) ? o.to : [o.to];
  const args = [
    '--server', host,
    '--port', String(o.port),
    '--helo', 'client.test',
    '--timeout', '10',
    ...(o.localAddress ? ['--local-interface', o.localAddress] : []),
    ...(o.from !== undefined ? ['--from', o.from] : []),
    ...(to.length > 0 ? ['--to', to.join(',')] : []),
    ...(o.tlsOnConnect ? ['--tls-on-connect'] : []),
    ...(o.args ?? []),
  ];
  const r = await run('swaks', args, { timeoutMs: o.timeoutMs ?? 30_000 });
  return { ...r, transcript: r.stdout };
}
