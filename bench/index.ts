// `npm run bench [-- NAME ...] [-- --quick]`: runs the named benchmarks (all by default) and prints each
// figure beside its baseline measured in the same run, the ratio, and the target it is held to.
// Benchmarks never run in `npm test`: speed is reported as ratios here, never asserted as timings in tests.

import { benchStore } from './store.ts';
import { benchRedis } from './redis.ts';
import { benchEngine } from './engine.ts';
import { benchIngest } from './ingest.ts';
import { benchSmtp } from './smtp.ts';
import { benchExport } from './export.ts';
import { benchPolicy } from './policy.ts';
import { benchFeed } from './feed.ts';
import { benchDrac } from './drac.ts';
import type { BenchResult } from './types.ts';
import { formatResults } from './format.ts';

const SUITES: Record<string, (opts: { quick?: boolean }) => Promise<BenchResult[]>> = {
  store: benchStore,
  redis: benchRedis,
  engine: benchEngine,
  ingest: benchIngest,
  export: benchExport,
  smtp: benchSmtp,
  policy: benchPolicy,
  feed: benchFeed,
  drac: benchDrac,
};

async function mainBench(argv: string[]): Promise<number> {
  const quick = argv.includes('--quick');
  const names = argv.filter((a) => !a.startsWith('--'));
  const unknown = names.filter((n) => !(n in SUITES));
  if (unknown.length > 0) {
    process.stderr.write(`unknown benchmark(s): ${unknown.join(', ')}; available: ${Object.keys(SUITES).join(', ')}\n`);
    return 64;
  }
  const chosen = names.length > 0 ? names : Object.keys(SUITES);
  const all: BenchResult[] = [];
  process.stdout.write(`relaygate benchmarks — node ${process.version}, ${new Date().toISOString()}${quick ? ' (quick)' : ''}\n`);
  for (const name of chosen) {
    process.stdout.write(`\n## ${name}\n`);
    const results = await SUITES[name]!({ quick });
    process.stdout.write(`${formatResults(results)}\n`);
    for (const r of results) if (r.notes) process.stdout.write(`  ${r.name}: ${r.notes}\n`);
    all.push(...results);
  }
  const missed = all.filter((r) => r.pass === false);
  process.stdout.write(`\n${all.length} figures, ${missed.length} below target\n`);
  return 0;
}

process.exitCode = await mainBench(process.argv.slice(2));
