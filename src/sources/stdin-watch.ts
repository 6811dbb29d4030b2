// A [[watch]] with `stdin = true` (or `relaygate run --stdin-format NAME`): log lines from standard input,
// for `syslog ... | relaygate run --stdin-format dovecot` setups. There is no position to save: what the
// pipe delivers is read once. End of input ends this source (logged), not the daemon.
// Security: the same parser as files; lines are untrusted.

import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import type { Logger } from '../log/logger.ts';
import type { Clock } from '../clock.ts';
import type { LineParser, ParseResult } from './parser.ts';
import type { LoginRecorder } from './recorder.ts';

const BATCH = 500;

export class StdinWatch {
  private done: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly input: Readable,
    private readonly parser: LineParser,
    private readonly recorder: LoginRecorder,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.done = this.run();
  }

  /** Resolves when the input has ended and every line was recorded. */
  finished(): Promise<void> {
    return this.done ?? Promise.resolve();
  }

  private async run(): Promise<void> {
    const rl = createInterface({ input: this.input, crlfDelay: Infinity });
    let batch: ParseResult[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      const b = batch;
      batch = [];
      for (let attempt = 0; ; attempt++) {
        try {
          await this.recorder.record(b);
          return;
        } catch (err) {
          // The store is down: keep the lines and retry (back-off), never drop an acknowledged login.
          this.logger.error({ event: 'stdin_record_failed', attempt, err }, 'could not record logins from stdin; retrying');
          await new Promise((r) => setTimeout(r, Math.min(30_000, 200 * 2 ** attempt)));
          if (this.closed) return;
        }
      }
    };
    for await (const line of rl) {
      batch.push(this.parser.parse(line, this.clock()));
      // Record promptly when the pipe goes quiet; in bulk while it streams.
      if (batch.length >= BATCH || this.input.readableLength === 0) await flush();
    }
    await flush();
    this.logger.info({ event: 'stdin_end', lines: this.recorder.counters.lines, logins: this.recorder.counters.logins }, 'standard input ended');
  }

  close(): void {
    this.closed = true;
    this.recorder.close();
  }
}
