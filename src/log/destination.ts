// The daemon's log destination: the lines logged during one turn of the event loop are written together,
// with one write(2), at the end of that turn (setImmediate), instead of one write(2) per line.
//
// Why: the policy service logs a Postfix-shaped line for every permit, and on a loaded VM a write(2) of one
// line costs as much as the rest of the request (measured: ~9 µs per line, bench/policy.ts). Ten Postfix
// connections deliver several requests per turn, so their lines share one write.
//
// Nothing is lost on the ways a daemon ends: process.exit() (SIGTERM/SIGINT stop, fatal start-up errors)
// runs the 'exit' flush; an uncaught exception or unhandled rejection runs the 'uncaughtExceptionMonitor'
// flush before Node prints it and exits; more than FLUSH_BYTES waiting are written at once. What SIGKILL or
// a native crash can cut off is the current turn's lines (well under a millisecond of logging), and the
// kernel keeps whatever was written, as with the one-write-per-line destination.
//
// A destination that cannot take the bytes now (EAGAIN: stdout is a non-blocking pipe whose reader is slow)
// is retried, waiting 1 ms between tries, for up to EAGAIN_LIMIT_MS (the daemon then stalls as it would with
// blocking writes); after that the lines are dropped with one line on stderr that says how many bytes.

import { writeSync } from 'node:fs';

export const FLUSH_BYTES = 64 * 1024;
export const EAGAIN_LIMIT_MS = 10_000;

const sleeper = new Int32Array(new SharedArrayBuffer(4));

export class TurnBufferedDestination {
  readonly fd: number;
  #chunks: string[] = [];
  #length = 0;
  #scheduled = false;
  #flushTurn = () => {
    this.#scheduled = false;
    this.flushSync();
  };

  constructor(fd: number) {
    this.fd = fd;
    process.on('exit', () => this.flushSync());
    process.on('uncaughtExceptionMonitor', () => this.flushSync());
  }

  /** pino's destination interface: one serialized line (with its newline) */
  write(line: string): boolean {
    this.#chunks.push(line);
    this.#length += line.length;
    if (this.#length >= FLUSH_BYTES) this.flushSync();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#flushTurn);
    }
    return true;
  }

  /** pino's logger.flush() */
  flush(cb?: (err?: Error) => void): void {
    try {
      this.flushSync();
      cb?.();
    } catch (err) {
      cb?.(err as Error);
    }
  }

  /** Writes everything waiting, now. */
  flushSync(): void {
    if (this.#chunks.length === 0) return;
    const data = Buffer.from(this.#chunks.length === 1 ? this.#chunks[0]! : this.#chunks.join(''), 'utf8');
    this.#chunks = [];
    this.#length = 0;
    let off = 0;
    let waited = 0;
    while (off < data.length) {
      try {
        off += writeSync(this.fd, data, off, data.length - off);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || waited >= EAGAIN_LIMIT_MS) {
          dropped(data.length - off, err as NodeJS.ErrnoException);
          return;
        }
        Atomics.wait(sleeper, 0, 0, 1);
        waited++;
      }
    }
  }
}

function dropped(bytes: number, err: NodeJS.ErrnoException): void {
  try {
    writeSync(2, `relaygate: ${bytes} bytes of log lines dropped: the log destination failed (${err.code ?? err.message})\n`);
  } catch {
    // stderr is gone too: nowhere left to say it
  }
}
