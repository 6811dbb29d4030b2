// The gateway inside a real `relaygate run` process: started because [[listen]] is configured, killed with
// SIGKILL in the middle of DATA and while the upstream is still deciding — the invariant is that a client
// never holds a 250 for a message the upstream lacks — and stopped with SIGTERM, which lets a message in
// flight finish. The upstream is the recording sink in this (test) process.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startSink, type Sink } from '../../helpers/smtp-sink.ts';
import { SmtpClient } from '../../helpers/smtp-client.ts';
import { waitExit } from '../../helpers/proc.ts';
import { message } from '../../helpers/smtp-gateway.ts';

const ROOT = resolve(import.meta.dirname, '../../..');
const MAIN = join(ROOT, 'src/main.ts');
const TSX = import.meta.resolve('tsx');

let dir: string;
let sink: Sink;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rg-smtp-daemon-'));
  sink = await startSink();
});
after(async () => {
  await sink?.close();
  await rm(dir, { recursive: true, force: true });
});

interface Daemon {
  child: ChildProcess;
  port: number;
  lines: string[];
}

/** Starts `relaygate run` and waits (bounded) for its smtp_listening line. */
async function startDaemon(name: string): Promise<Daemon> {
  const file = join(dir, `${name}.toml`);
  await writeFile(
    file,
    [
      `data_dir = ${JSON.stringify(join(dir, name))}`,
      'log_level = "info"',
      'mynetworks = ["127.0.0.10/32"]',
      'mydestination = ["local.example"]',
      '[[listen]]',
      'address = "127.0.0.1:0"',
      'role = "smtp"',
      '[smtp]',
      'hostname = "gw.test"',
      `relayhost = "127.0.0.1:${sink.port}"`,
      'relayhost_timeout = 5',
      'peername_lookup = false',
      '',
    ].join('\n'),
  );
  const child = spawn(process.execPath, ['--import', TSX, MAIN, 'run', '-c', file], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d));
  const port = await new Promise<number>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`relaygate run did not start within 20 s: ${stderr}`)), 20_000);
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lines.push(line);
        try {
          const o = JSON.parse(line) as { event?: string; listeners?: Array<{ port: number }> };
          if (o.event === 'smtp_listening' && o.listeners?.[0]) {
            clearTimeout(timer);
            res(o.listeners[0].port);
          }
        } catch {
          // not JSON
        }
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      rej(new Error(`relaygate run exited ${code}: ${stderr}`));
    });
  });
  return { child, port, lines };
}

async function begin(port: number, ip: string, to: string): Promise<SmtpClient> {
  const c = await SmtpClient.connect({ port, localAddress: ip, timeoutMs: 8000 });
  await c.cmd('EHLO kill.test');
  assert.equal((await c.cmd('MAIL FROM:<a@local.example>')).code, 250);
  assert.equal((await c.cmd(`RCPT TO:<${to}>`)).code, 250);
  assert.equal((await c.cmd('DATA')).code, 354);
  return c;
}

test('SIGKILL in the middle of DATA: no 250 for the client, no message upstream', async () => {
  const d = await startDaemon('kill-mid-data');
  const seen = sink.connections;
  const c = await begin(d.port, '127.0.0.120', 'mid@local.example');
  c.write('Subject: killed-mid-data\r\n\r\nfirst half of the body\r\n');
  // wait until the gateway has the upstream transaction open (the sink saw a connection)
  for (let i = 0; i < 100 && sink.connections === seen; i++) await new Promise((r) => setTimeout(r, 20));
  d.child.kill('SIGKILL');
  assert.ok(await waitExit(d.child, 5000));
  await assert.rejects(c.read(3000), /connection closed/);
  c.destroy();
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(!sink.messages.some((m) => m.data.includes('killed-mid-data')), 'the upstream discarded the partial message');
});

test('SIGKILL while the upstream is still deciding: the client has no 250 (the upstream may keep a copy: a duplicate, never a loss)', async () => {
  const d = await startDaemon('kill-deciding');
  sink.mode = { kind: 'accept', delayMs: 1500 };
  try {
    const c = await begin(d.port, '127.0.0.121', 'deciding@local.example');
    c.write(message('killed-while-deciding') + '.\r\n');
    for (let i = 0; i < 200 && !sink.messages.some((m) => m.data.includes('killed-while-deciding')); i++) await new Promise((r) => setTimeout(r, 10));
    d.child.kill('SIGKILL');
    assert.ok(await waitExit(d.child, 5000));
    await assert.rejects(c.read(3000), /connection closed/);
    c.destroy();
  } finally {
    sink.mode = { kind: 'accept' };
  }
});

test('SIGKILL at a random moment under load: every message a client got 250 for is upstream', async () => {
  const d = await startDaemon('kill-load');
  const acked: string[] = [];
  let stop = false;
  const worker = async (w: number) => {
    for (let i = 0; i < 200 && !stop; i++) {
      const subject = `load-${w}-${i}`;
      try {
        const c = await SmtpClient.connect({ port: d.port, localAddress: `127.0.3.${w + 1}`, timeoutMs: 3000 });
        await c.cmd('EHLO load.test');
        await c.cmd('MAIL FROM:<a@local.example>');
        await c.cmd('RCPT TO:<load@local.example>');
        await c.cmd('DATA');
        c.write(message(subject, 'x'.repeat(2000)) + '.\r\n');
        const r = await c.read();
        if (r.code === 250) acked.push(subject);
        c.destroy();
      } catch {
        return; // the gateway is gone
      }
    }
  };
  const workers = Promise.all([0, 1, 2, 3].map(worker));
  await new Promise((r) => setTimeout(r, 400 + Math.floor(Math.random() * 400)));
  d.child.kill('SIGKILL');
  stop = true;
  await workers;
  assert.ok(await waitExit(d.child, 5000));
  assert.ok(acked.length > 0, 'some messages went through before the kill');
  for (const s of acked) assert.ok(sink.messages.some((m) => m.data.includes(`Subject: ${s}\r\n`)), `${s} was acknowledged, so the upstream has it`);
});

test('SIGTERM: the message in flight still gets its 250, then the daemon exits 0', async () => {
  const d = await startDaemon('term');
  sink.mode = { kind: 'accept', delayMs: 500 };
  try {
    const c = await begin(d.port, '127.0.0.122', 'term@local.example');
    c.write(message('sigterm-in-flight') + '.\r\n');
    await new Promise((r) => setTimeout(r, 100));
    d.child.kill('SIGTERM');
    const r = await c.read(5000);
    assert.match(r.raw, /^250 2\.0\.0 Ok: queued as /);
    c.destroy();
    assert.ok(await waitExit(d.child, 15_000));
    assert.equal(d.child.exitCode, 0);
    assert.ok(d.lines.some((l) => l.includes('smtp gateway stopped')));
  } finally {
    sink.mode = { kind: 'accept' };
  }
});
