// The SMTP gateway under test, wired the way `relaygate run` wires it: a TOML file in a temp directory →
// openRuntime() (real config loader, real LMDB access map, real engine) → a real passwd-file SASL backend
// from src/auth → startGateway() with listeners on 127.0.0.1 port 0 → a sink (smtp-sink.ts) as relayhost.
// The clock is manual so a test can expire a grant; log lines are captured for assertions.
//
// Client addresses (all loopback): 127.0.0.10 is in mynetworks; everything else is a stranger unless a test
// gives it a grant.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { ConnectionOptions } from 'node:tls';
import { openRuntime, type Runtime } from '../../src/cli/runtime.ts';
import { manualClock } from '../../src/clock.ts';
import { createLogger } from '../../src/log/logger.ts';
import { createBackend, type AuthThrottle, type SaslBackend } from '../../src/auth/index.ts';
import { startGateway, type Gateway, type ListenRole } from '../../src/frontends/smtp/index.ts';
import { startSink, type Sink, type SinkOptions } from './smtp-sink.ts';

export const MYNETWORKS_CLIENT = '127.0.0.10';

/** passwd-file users: {PLAIN} entries, so CRAM-MD5 is possible too. */
export const PASSWD = ['alice:{PLAIN}alice-secret', 'bob:{PLAIN}bob-secret'].join('\n');

export interface HarnessOptions {
  /** listeners, default one of each role */
  roles?: ListenRole[];
  /** where they listen (default "127.0.0.1:0") */
  listenAddress?: string;
  /** extra top-level TOML lines (before any table) */
  top?: string;
  /** extra [smtp] lines */
  smtp?: string;
  /** extra [auth] lines */
  auth?: string;
  /** no SASL backend at all */
  noAuth?: boolean;
  sink?: SinkOptions;
  /** relayhost override ("127.0.0.1:PORT"); default the sink */
  relayhost?: string;
  throttle?: AuthThrottle;
  loopbackIsLocal?: boolean;
  upstreamTls?: ConnectionOptions;
  /** a SaslBackend to use instead of the passwd-file one */
  backend?: SaslBackend;
}

export interface Harness {
  readonly dir: string;
  readonly rt: Runtime;
  readonly gateway: Gateway;
  readonly sink: Sink;
  readonly backend: SaslBackend | undefined;
  readonly clock: ReturnType<typeof manualClock>;
  /** `msg` of every log line so far */
  readonly logs: string[];
  port(role: ListenRole): number;
  /** resolves with the first log msg matching re (waits up to timeoutMs) */
  waitLog(re: RegExp, timeoutMs?: number): Promise<string>;
  close(): Promise<void>;
}

export async function startHarness(o: HarnessOptions = {}): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), 'rg-smtp-'));
  const sink = await startSink(o.sink);
  const roles = o.roles ?? ['smtp', 'submission', 'submissions'];
  await writeFile(join(dir, 'passwd'), `${PASSWD}\n`);
  const toml = [
    `data_dir = ${JSON.stringify(join(dir, 'data'))}`,
    'log_level = "info"',
    `mynetworks = ["${MYNETWORKS_CLIENT}/32"]`,
    'mydestination = ["local.example"]',
    o.top ?? '',
    ...roles.flatMap((r) => ['[[listen]]', `address = "${o.listenAddress ?? '127.0.0.1:0'}"`, `role = "${r}"`]),
    '[smtp]',
    'hostname = "gw.test"',
    `relayhost = "${o.relayhost ?? `127.0.0.1:${sink.port}`}"`,
    ...(/relayhost_timeout/.test(o.smtp ?? '') ? [] : ['relayhost_timeout = 3']),
    'peername_lookup = false',
    o.smtp ?? '',
    '[auth]',
    ...(o.noAuth ? [] : ['backend = "passwd-file"', `path = ${JSON.stringify(join(dir, 'passwd'))}`]),
    o.auth ?? '',
    '',
  ].join('\n');
  const file = join(dir, 'relaygate.toml');
  await writeFile(file, toml);

  const logs: string[] = [];
  const listeners: Array<() => void> = [];
  const dest = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line.trim() === '') continue;
        try {
          const o2 = JSON.parse(line) as { msg?: string };
          if (typeof o2.msg === 'string') logs.push(o2.msg);
        } catch {
          logs.push(line);
        }
      }
      for (const l of listeners.splice(0)) l();
      cb();
    },
  });
  const logger = createLogger({ level: 'info', destination: dest });
  const clock = manualClock(Date.now());
  const rt = await openRuntime(file, logger, clock);
  const engine = await rt.engine();
  const backend =
    o.backend ??
    (o.noAuth
      ? undefined
      : await createBackend({ backend: 'passwd-file', path: join(dir, 'passwd'), timeoutMs: 5000, logger, clock }));
  const gateway = await startGateway({
    config: rt.config,
    engine,
    grants: rt.map,
    authBackend: backend,
    throttle: o.throttle,
    logger,
    clock,
    dataDir: rt.config.data_dir,
    loopbackIsLocal: o.loopbackIsLocal,
    upstreamTls: o.upstreamTls,
  });
  const addrs = gateway.addresses();
  return {
    dir,
    rt,
    gateway,
    sink,
    backend,
    clock,
    logs,
    port(role) {
      const a = addrs.find((x) => x.role === role);
      if (!a) throw new Error(`no ${role} listener`);
      return a.port;
    },
    async waitLog(re, timeoutMs = 3000) {
      const deadline = Date.now() + timeoutMs;
      for (let i = 0; i < 10_000; i++) {
        const hit = logs.find((l) => re.test(l));
        if (hit !== undefined) return hit;
        const left = deadline - Date.now();
        if (left <= 0) break;
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.min(left, 200));
          listeners.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
      throw new Error(`no log line matching ${re} within ${timeoutMs} ms; last lines:\n${logs.slice(-15).join('\n')}`);
    },
    async close() {
      await gateway.stop(200);
      await backend?.close();
      await rt.close();
      await sink.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Records a POP-before-SMTP grant for `ip` (as a log watcher would). */
export async function grant(h: Harness, ip: string, user: string, ttl?: number): Promise<void> {
  const r = await h.rt.map.record({ ip, user, source: 'test:dovecot', service: 'imap', ...(ttl !== undefined ? { ttl } : {}) });
  if (!r.recorded) throw new Error(`grant for ${ip} refused: ${r.reason} ${r.detail}`);
}

/** A small RFC 5322 message with CRLF line endings. */
export function message(subject: string, body = 'hello'): string {
  return `From: <a@local.example>\r\nTo: <b@local.example>\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@test>\r\n\r\n${body}\r\n`;
}
