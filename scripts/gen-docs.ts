// `npm run docs`: regenerates contrib/relaygate.toml and README's option table from OPTION_DOCS, the one
// place options are documented (test/config checks that both are in step).
import { readFile, writeFile } from 'node:fs/promises';
import { OPTION_DOCS } from '../src/config/schema.ts';
import { defaultsTemplate } from '../src/config/show.ts';

const root = new URL('../', import.meta.url);
await writeFile(new URL('contrib/relaygate.toml', root), defaultsTemplate());
const readme = await readFile(new URL('README.md', root), 'utf8');
const cell = (s: string) => s.replace(/\|/g, '\\|');
const table = [
  '| key | default | meaning |',
  '|---|---|---|',
  ...OPTION_DOCS.map((o) => `| \`${o.key}\` | \`${cell(o.default)}\` | ${o.example ? 'example, no default: ' : ''}${cell(o.doc)} |`),
].join('\n');
const next = readme.replace(/<!-- options:start -->[\s\S]*?<!-- options:end -->/, `<!-- options:start -->\n${table}\n<!-- options:end -->`);
await writeFile(new URL('README.md', root), next);
process.stdout.write('contrib/relaygate.toml and README option table regenerated\n');
