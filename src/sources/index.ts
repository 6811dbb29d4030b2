// sources/: where logins come from. Builds one source per [[watch]] table (file/glob, journald, stdin) and
// runs them; each writes only LoginEvents (and its own position) to the access map.
// Security: see parser.ts (untrusted lines) and recorder.ts (only successful logins make grants).

import type { SourceStats } from '../metrics/metrics.ts';
import type { AccessMap } from '../store/index.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log/logger.ts';
import type { WatchConfig } from '../config/index.ts';
import { getFormat } from './formats/index.ts';
import { LineParser, compileCustomPattern } from './parser.ts';
import { FileWatch } from './file-watch.ts';
import { StdinWatch } from './stdin-watch.ts';
import { JournaldWatch } from './journald.ts';
import { LoginRecorder } from './recorder.ts';

export interface SourceDeps {
  readonly map: AccessMap;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly grace: number;
}

export interface RunningSource {
  readonly name: string;
  stop(): Promise<void>;
  /** cumulative counts for /metrics (one row per followed file; files also report their lag in bytes) */
  stats(): SourceStats[] | Promise<SourceStats[]>;
  /** for /healthz: a file watch follows at least one file; journald's journalctl runs */
  health(): { ok: boolean; detail?: string };
}

/** The default prefix of each kind of source when [[watch]] does not name one. */
export function defaultPrefix(w: WatchConfig): string {
  return w.prefix ?? 'syslog';
}

export function parserFor(w: Pick<WatchConfig, 'format' | 'prefix' | 'ident' | 'pattern'>, prefix: string): () => LineParser {
  const format = getFormat(w.format);
  const custom = w.pattern === undefined ? undefined : compileCustomPattern(w.pattern);
  const idents = w.ident === undefined ? undefined : typeof w.ident === 'string' ? [w.ident] : [...w.ident];
  return () => new LineParser({ format, prefix, idents, custom });
}

export function describeWatch(w: WatchConfig): string {
  const where = w.path ?? (w.journald ? `journald${w.unit ? ` -u ${w.unit}` : ''}${w.identifier ? ` -t ${w.identifier}` : ''}` : 'stdin');
  return `${w.format}:${where}`;
}

export async function startSources(watches: readonly WatchConfig[], deps: SourceDeps, input: NodeJS.ReadableStream = process.stdin): Promise<RunningSource[]> {
  const running: RunningSource[] = [];
  try {
    for (const w of watches) {
      const name = describeWatch(w);
      if (w.path !== undefined) {
        const fw = new FileWatch({
          path: w.path,
          parserFactory: parserFor(w, defaultPrefix(w)),
          formatName: w.format,
          map: deps.map,
          clock: deps.clock,
          logger: deps.logger,
          grace: deps.grace,
          trackLogout: w.track_logout,
          startAt: w.start_at,
        });
        await fw.start();
        running.push({
          name,
          stop: () => fw.stop(),
          health: () => {
            const files = fw.files();
            const missing = files.filter((f) => f.missing).map((f) => f.file);
            if (files.length === 0) return { ok: false, detail: `no file at ${w.path} (waiting for it to appear)` };
            return missing.length === 0 ? { ok: true } : { ok: false, detail: `no file at ${missing.join(', ')} (waiting for it to appear)` };
          },
          stats: () => Promise.all(fw.files().map(async (f) => ({ source: f.file, format: w.format, lines: f.counters.lines, logins: f.logins.logins, grants: f.logins.granted, lagBytes: await f.lag() }))),
        });
      } else if (w.journald === true) {
        const jw = new JournaldWatch({ watch: w, parser: parserFor(w, 'none')(), ...deps });
        await jw.start();
        running.push({
          name,
          stop: () => jw.stop(),
          health: () => (jw.running ? { ok: true } : { ok: false, detail: 'journalctl is not running (restarting with back-off)' }),
          stats: () => [{ source: name, format: w.format, lines: jw.counters.entries + jw.counters.skipped, logins: jw.loginCounters.logins, grants: jw.loginCounters.granted }],
        });
      } else {
        const recorder = new LoginRecorder({ ...deps, source: `${w.format}:stdin`, trackLogout: w.track_logout });
        const sw = new StdinWatch(input as unknown as import('node:stream').Readable, parserFor(w, defaultPrefix(w))(), recorder, deps.clock, deps.logger);
        sw.start();
        running.push({
          name,
          stop: async () => {
            sw.close();
          },
          health: () => ({ ok: true }),
          stats: () => [{ source: `${w.format}:stdin`, format: w.format, lines: recorder.counters.lines, logins: recorder.counters.logins, grants: recorder.counters.granted }],
        });
      }
    }
  } catch (err) {
    for (const r of running) await r.stop().catch(() => undefined);
    throw err;
  }
  return running;
}
