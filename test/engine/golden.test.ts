// Golden transcripts: every test/engine/*.in runs through transcript.ts and must equal its .ref, byte for
// byte. The .ref files are the engine's specification, reviewed by eye; regenerate them with
// `UPDATE_GOLDEN=1 node --import tsx --test test/engine/golden.test.ts` and read the diff before committing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runTranscript } from './transcript.ts';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const inputs = (await readdir(HERE)).filter((f) => f.endsWith('.in')).sort();

test('there are golden transcripts', () => {
  assert.ok(inputs.length > 0);
});

for (const name of inputs) {
  test(`golden: ${name}`, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rg-golden-'));
    try {
      const actual = await runTranscript(await readFile(join(HERE, name), 'utf8'), dir);
      const refPath = join(HERE, name.replace(/\.in$/, '.ref'));
      if (process.env.UPDATE_GOLDEN === '1') {
        await writeFile(refPath, actual);
        return;
      }
      const expected = await readFile(refPath, 'utf8').catch(() => '(missing .ref: run with UPDATE_GOLDEN=1 and review it)\n');
      assert.equal(actual, expected);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}
