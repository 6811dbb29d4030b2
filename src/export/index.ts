// export/: keeps a Postfix table (lmdb:, hash:, btree:, cdb:) in step with the access map by running
// Postfix's own postmap, for sites that want no live relaygate dependency in Postfix's SMTP path
// (`check_client_access lmdb:/path/name` in smtpd_relay_restrictions). exporter.ts is the module;
// startTableExport() is what `relaygate run` calls.
//
// Security: see exporter.ts and keys.ts. Keys are normalized client IPs only; failures leave the table short
// of a grant (clients are denied), never with an extra one.

import type { Clock } from '../clock.ts';
import type { Logger } from '../log/logger.ts';
import type { AccessMap } from '../store/types.ts';
import { RelaygateError } from '../errors.ts';
import type { ExportSettings } from './config.ts';
import { TableExporter } from './exporter.ts';
import { observeAccessMap } from './observed-map.ts';
import { resolvePostmap, supportedTypes } from './postmap.ts';
import { parseTableSpec } from './table-spec.ts';

export { TableExporter, type ExportStats, type TableExporterOptions } from './exporter.ts';
export { observeAccessMap, type GrantObserver } from './observed-map.ts';
export { exportConfigProblems, type ExportSettings } from './config.ts';
export { postfixClientKey, tableValue, type ExportValue } from './keys.ts';
export { parseTableSpec, TABLE_TYPES, DEFAULT_TABLE_TYPE, type TableSpec, type TableType } from './table-spec.ts';
export { resolvePostmap, supportedTypes, runProgram, SBIN_DIRS } from './postmap.ts';

export interface RunningExport {
  readonly exporter: TableExporter;
  /** the access map to hand to every writer (sources, feeds, sweeper): it reports changes to the exporter */
  readonly map: AccessMap;
  stop(): Promise<void>;
}

export interface StartExportOptions {
  readonly settings: ExportSettings;
  readonly map: AccessMap;
  readonly clock: Clock;
  readonly logger: Logger;
}

/**
 * Finds postmap (RG_ERR_POSTMAP), checks that this Postfix has the table type (RG_ERR_EXPORT_TABLE), rebuilds
 * the table from the map's active grants (RG_ERR_EXPORT_TABLE), and returns the observed map.
 */
export async function startTableExport(o: StartExportOptions): Promise<RunningExport> {
  const { settings, logger } = o;
  if (settings.table === undefined) throw new RelaygateError('RG_ERR_INTERNAL', 'startTableExport called without [export] table');
  const spec = parseTableSpec(settings.table);
  if (typeof spec === 'string') throw new RelaygateError('RG_ERR_CONFIG_INVALID', `export.table: ${spec}`);
  const postmap = await resolvePostmap(settings.postmap);
  const types = await supportedTypes(postmap, settings.config_directory);
  if (types !== undefined && !types.has(spec.type.type)) {
    throw new RelaygateError(
      'RG_ERR_EXPORT_TABLE',
      `export.table ${JSON.stringify(settings.table)}: this Postfix has no ${spec.type.type}: tables (postconf -m lists ${[...types].sort().join(', ')}); install ${spec.type.debianPackage} or choose another type`,
    );
  }
  const exporter = new TableExporter({ table: spec, value: settings.value, postmap, configDirectory: settings.config_directory, map: o.map, clock: o.clock, logger });
  await exporter.start();
  const map = observeAccessMap(
    o.map,
    {
      noteGrant: (g) => exporter.noteGrant(g),
      noteDelete: (ip) => exporter.noteDelete(ip),
      noteSweep: () => {
        exporter.reconcile().catch((err: unknown) => {
          logger.error({ event: 'export_reconcile_failed', table: spec.text, err }, `could not compare ${spec.text} with the access map (retrying after the next sweep): ${(err as Error).message}`);
        });
      },
    },
    logger,
  );
  logger.info({ event: 'export_started', table: spec.text, postmap, value: settings.value }, `exporting grants to the Postfix table ${spec.text} with ${postmap}`);
  return { exporter, map, stop: () => exporter.stop() };
}
