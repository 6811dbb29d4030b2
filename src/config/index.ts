// config/: the only place configuration is read. Everything else receives the frozen Config.
export { loadConfig, resolveConfigFile, parseConfig, parseConfigText, DEFAULT_CONFIG_FILE, type LoadedConfig } from './load.ts';
export { validateConfig, sunsetOptions, type NetworkSets } from './validate.ts';
export { configSchema, OPTION_DOCS, schemaKeys, DEFAULT_RELAY_RESTRICTIONS, LOG_LEVELS, PREFIX_NAMES, type Config, type OptionDoc, type WatchConfig } from './schema.ts';
export { parseDuration, formatDuration } from './duration.ts';
export { showConfig, defaultsTemplate } from './show.ts';
