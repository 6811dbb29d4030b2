// The error catalog and README's error table must agree row for row (code, exit, meaning, fix).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { ERROR_CATALOG, RelaygateError } from '../src/errors.ts';

async function readmeErrorRows(): Promise<Map<string, string[]>> {
  const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8');
  const block = /<!-- errors:start -->([\s\S]*?)<!-- errors:end -->/.exec(readme);
  assert.ok(block, 'README.md must contain the errors:start/end block');
  const rows = new Map<string, string[]>();
  for (const line of block[1]!.split('\n')) {
    const m = /^\| `(RG_ERR_[A-Z_]+)` \| (\d+) \| (.*) \| (.*) \|$/.exec(line.trim());
    if (m) rows.set(m[1]!, [m[2]!, m[3]!, m[4]!]);
  }
  return rows;
}

test('every catalog code is documented in README with the same exit status, meaning and fix', async () => {
  const rows = await readmeErrorRows();
  for (const [code, doc] of Object.entries(ERROR_CATALOG)) {
    const row = rows.get(code);
    assert.ok(row, `README error table lacks ${code}`);
    assert.deepEqual(row, [String(doc.exit), doc.summary, doc.fix], `README row for ${code} is out of date`);
  }
});

test('README documents no code the catalog lacks', async () => {
  const rows = await readmeErrorRows();
  for (const code of rows.keys()) assert.ok(code in ERROR_CATALOG, `README documents unknown code ${code}`);
});

test('codes are RG_ERR_* and every fix says what to do', () => {
  for (const [code, doc] of Object.entries(ERROR_CATALOG)) {
    assert.match(code, /^RG_ERR_[A-Z_]+$/);
    assert.ok(doc.fix.length > 10 && doc.summary.length > 10, code);
    assert.ok(Number.isInteger(doc.exit) && doc.exit > 0 && doc.exit < 128, code);
  }
});

test('RelaygateError carries its code, details and exit status', () => {
  const e = new RelaygateError('RG_ERR_CONFIG_INVALID', 'x', { details: ['a', 'b'] });
  assert.equal(e.code, 'RG_ERR_CONFIG_INVALID');
  assert.deepEqual(e.details, ['a', 'b']);
  assert.equal(e.exitCode, 78);
  assert.ok(e instanceof Error);
});
