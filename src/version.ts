// relaygate's version, as `relaygate --version`, the status page and the metrics show it.
// Kept in step with package.json by test/cli/cli.test.ts.
export const VERSION = '0.1.0';
