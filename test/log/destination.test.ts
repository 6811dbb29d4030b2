// The daemon's log destination (src/log/destination.ts): the lines of one event-loop turn are written with
// one write(2) at the end of the turn, and none is lost when the process ends by process.exit() or by an
// uncaught exception. Real child processes, real file descriptors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TurnBufferedDestination } from '../../src/log/destination.ts';
import { createLogger } from '../../src/log/logger.ts';

const LOGGER = fileURLToPath(new URL('../../src/log/logger.ts', import.meta.url));

/** Runs `body` in a child (a logger `log` on stdout with perTurn) and returns its stdout lines, stderr and status. */
function child(body: string): { lines: Record<string, unknown>[]; stderr: string; status: number | null } {
  const code = `import { createLogger } from ${JSON.stringify(LOGGER)};\nconst log = createLogger({ level: 'info', perTurn: true });\n${body}`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { encoding: 'utf8', timeout: 30_000 });
  const lines = r.stdout.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
  return { lines, stderr: r.stderr, status: r.status };
}

test('lines of one turn are written together at its end, in order', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rg-dest-'));
  const path = join(dir, 'log');
  const fd = openSync(path, 'w');
  try {
    const log = createLogger({ level: 'info', destination: fd, perTurn: true });
    for (let i = 0; i < 5; i++) log.info({ i }, `line ${i}`);
    assert.equal(readFileSync(path, 'utf8'), '', 'nothing written before the turn ends');
    await new Promise((r) => setImmediate(r));
    const lines = readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { i: number });
    assert.deepEqual(lines.map((l) => l.i), [0, 1, 2, 3, 4]);
    // past FLUSH_BYTES a turn's lines are written at once
    const d = new TurnBufferedDestination(fd);
    const size = readFileSync(path).length;
    d.write('small\n');
    assert.equal(readFileSync(path).length, size, 'a small line waits for the end of the turn');
    d.write(`${'x'.repeat(70_000)}\n`);
    assert.equal(readFileSync(path).length, size + 6 + 70_001, 'past FLUSH_BYTES everything waiting is written at once');
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('process.exit() right after logging: the lines are written', () => {
  const r = child(`log.info('before exit'); log.warn({ event: 'x' }, 'last words'); process.exit(3);`);
  assert.equal(r.status, 3);
  assert.deepEqual(r.lines.map((l) => l['msg']), ['before exit', 'last words']);
});

test('an uncaught exception or unhandled rejection after logging: the lines are written before the crash', () => {
  const thrown = child(`log.info('about to fail'); setTimeout(() => { log.error('failing now'); throw new Error('boom'); }, 5);`);
  assert.notEqual(thrown.status, 0);
  assert.match(thrown.stderr, /boom/);
  assert.deepEqual(thrown.lines.map((l) => l['msg']), ['about to fail', 'failing now']);
  const rejected = child(`log.info('about to reject'); Promise.reject(new Error('nope'));`);
  assert.notEqual(rejected.status, 0);
  assert.deepEqual(rejected.lines.map((l) => l['msg']), ['about to reject']);
});
