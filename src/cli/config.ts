// `relaygate config check [FILE]` and `relaygate config show`: the same validation `run` performs.
// Security: reads the configuration and named table files only; starts nothing.

import { loadConfig, validateConfig, showConfig, defaultsTemplate } from '../config/index.ts';

export async function configCheckCommand(file: string | undefined): Promise<void> {
  const loaded = await loadConfig(file);
  await validateConfig(loaded);
  process.stdout.write(`${loaded.file ?? '(built-in defaults)'}: ok\n`);
}

export async function configShowCommand(opts: { config?: string; all?: boolean; defaults?: boolean }): Promise<void> {
  if (opts.defaults) {
    process.stdout.write(defaultsTemplate());
    return;
  }
  const loaded = await loadConfig(opts.config);
  await validateConfig(loaded);
  process.stdout.write(showConfig(loaded.config, opts.all === true));
}
