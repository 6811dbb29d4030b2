// The sweeper: removes expired grants from the access map on a timer.
//
// Lookups already treat an expired grant as absent, so the sweep is housekeeping (disk space, `map list`,
// stats), not a security boundary; it runs on its own timer so a quiet server is cleaned too, not only
// when traffic arrives. The timer is a setTimeout chain re-armed after each sweep finishes, so two sweeps
// never overlap however slow one is, and it is unref'd so it never keeps the process alive by itself.
//
// Security: trusts the map and the clock it is given; a failing sweep is logged and retried at the next
// tick, never thrown out of a timer (which would end the daemon).

import type { Clock } from '../clock.ts';
import type { Logger } from '../log/logger.ts';
import type { AccessMap } from './types.ts';

export interface SweeperOptions {
  readonly map: Pick<AccessMap, 'sweep'>;
  /** pause between the end of one sweep and the start of the next */
  readonly intervalMs: number;
  readonly clock: Clock;
  readonly logger: Logger;
}

export interface Sweeper {
  /** Cancels the timer and waits for a sweep in progress; later runNow() calls sweep nothing. */
  stop(): Promise<void>;
  /** Sweeps now (or joins the sweep already running) and resolves to the number removed; rejects on error. */
  runNow(): Promise<number>;
}

export function startSweeper(opts: SweeperOptions): Sweeper {
  const { map, clock, logger } = opts;
  if (!Number.isFinite(opts.intervalMs) || opts.intervalMs <= 0) throw new RangeError(`sweeper intervalMs must be positive (got ${opts.intervalMs})`);
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<number> | undefined;
  let stopped = false;

  const sweepOnce = async (): Promise<number> => {
    const started = performance.now();
    try {
      const n = await map.sweep(clock());
      const ms = Math.round(performance.now() - started);
      if (n > 0) logger.info({ event: 'sweep', swept: n, ms }, `swept ${n} expired grant(s) in ${ms} ms`);
      return n;
    } catch (err) {
      logger.error({ event: 'sweep_failed', err }, `sweeping the access map failed (retrying in ${opts.intervalMs} ms): ${err instanceof Error ? err.message : String(err)}`);
      throw err;
    }
  };

  const runNow = (): Promise<number> => {
    if (stopped) return Promise.resolve(0);
    // Joining the sweep in progress, rather than starting a second one, is what "never overlaps" means.
    running ??= sweepOnce().finally(() => {
      running = undefined;
    });
    return running;
  };

  const arm = (): void => {
    if (stopped) return;
    timer = setTimeout(() => {
      timer = undefined;
      // Already logged by sweepOnce; a timer callback must not reject.
      runNow()
        .catch(() => undefined)
        .finally(arm);
    }, opts.intervalMs);
    timer.unref();
  };
  arm();

  return {
    runNow,
    async stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      await running?.catch(() => undefined);
    },
  };
}
