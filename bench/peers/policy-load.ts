// Load generator for the policy benchmark (bench/policy.ts), forked with IPC so it never shares an event loop
// with a server under test. N persistent connections, each sending one request and waiting for its reply
// before the next — what Postfix's smtpd does with a policy or socketmap connection.
//
// Policy mode: the request is a real Postfix 3.7.11 block (test/fixtures/postfix/policy-request-rcpt.txt)
// with client_address/client_port/instance varied; a reply ends at "\n\n". Socketmap mode: the netstring
// `<len>:grant <ip>,`; a reply ends at its netstring's comma. Latency: request written → reply complete,
// recorded only inside the measuring window (after the warm-up). Answers are tallied by their first word,
// so the orchestrator can check the server answered what it should (OK for granted clients, ...).
//
// Security: connects to 127.0.0.1 only.

import net from 'node:net';

export interface LoadRequest {
  readonly kind: 'run';
  readonly mode: 'policy' | 'socketmap';
  readonly port: number;
  readonly connections: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  /** request payloads, cycled per connection (each connection starts at a different offset) */
  readonly requests: readonly string[];
}

export interface LoadResult {
  readonly count: number;
  readonly seconds: number;
  readonly rate: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
  readonly answers: Readonly<Record<string, number>>;
}

export type LoadReply = { kind: 'result'; result: LoadResult } | { kind: 'error'; message: string };

export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

const MAX_SAMPLES = 2_000_000;

/** End of the first complete reply in buf (index after it), or -1. */
function replyEnd(mode: 'policy' | 'socketmap', buf: Buffer): number {
  if (mode === 'policy') {
    const i = buf.indexOf('\n\n');
    return i === -1 ? -1 : i + 2;
  }
  const colon = buf.indexOf(58);
  if (colon === -1) return -1;
  const n = Number(buf.toString('latin1', 0, colon));
  const end = colon + 1 + n + 1;
  return buf.length >= end ? end : -1;
}

function answerWord(mode: 'policy' | 'socketmap', reply: Buffer): string {
  const text = reply.toString('latin1');
  if (mode === 'policy') return (text.startsWith('action=') ? text.slice(7) : text).split(/[\s\n]/)[0] ?? '?';
  const c = text.indexOf(':');
  return text.slice(c + 1).split(/[ ,]/)[0] ?? '?';
}

export async function runLoad(r: LoadRequest): Promise<LoadResult> {
  const samples = new Float64Array(MAX_SAMPLES);
  let n = 0;
  let count = 0;
  let errors = 0;
  const answers: Record<string, number> = {};
  let measuring = false;
  let stopping = false;
  const payloads = r.requests.map((q) => Buffer.from(q, 'latin1'));
  const sockets: net.Socket[] = [];

  const one = (idx: number) =>
    new Promise<void>((resolve) => {
      let k = (idx * 7919) % payloads.length;
      let buf: Buffer = Buffer.alloc(0);
      let t0 = 0n;
      const sock = net.connect({ host: '127.0.0.1', port: r.port });
      sockets.push(sock);
      sock.setNoDelay(true);
      const send = () => {
        if (stopping) {
          sock.end();
          return;
        }
        t0 = process.hrtime.bigint();
        sock.write(payloads[k]!);
        k = (k + 1) % payloads.length;
      };
      sock.on('connect', send);
      sock.on('data', (d: Buffer) => {
        buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
        for (;;) {
          const end = replyEnd(r.mode, buf);
          if (end === -1) break;
          const ms = Number(process.hrtime.bigint() - t0) / 1e6;
          if (measuring) {
            count++;
            if (n < MAX_SAMPLES) samples[n++] = ms;
            const w = answerWord(r.mode, buf.subarray(0, end));
            answers[w] = (answers[w] ?? 0) + 1;
          }
          buf = buf.subarray(end);
          send();
        }
      });
      sock.on('error', () => {
        errors++;
      });
      sock.on('close', () => resolve());
    });

  const done = Array.from({ length: r.connections }, (_, i) => one(i));
  await new Promise((res) => setTimeout(res, r.warmupMs));
  measuring = true;
  const start = process.hrtime.bigint();
  await new Promise((res) => setTimeout(res, r.durationMs));
  measuring = false;
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  stopping = true;
  const closeAll = setTimeout(() => {
    for (const s of sockets) s.destroy();
  }, 3000);
  await Promise.all(done);
  clearTimeout(closeAll);
  const sorted = samples.subarray(0, n).sort();
  return { count, seconds, rate: count / seconds, p50: percentile(sorted, 50), p99: percentile(sorted, 99), errors, answers };
}

// Run as a forked child: one request per IPC message, one reply.
if (process.send !== undefined) {
  process.on('message', (m: LoadRequest) => {
    if (m?.kind !== 'run') return;
    runLoad(m).then(
      (result) => process.send!({ kind: 'result', result } satisfies LoadReply),
      (err: Error) => process.send!({ kind: 'error', message: err.message } satisfies LoadReply),
    );
  });
  process.on('disconnect', () => process.exit(0));
}
