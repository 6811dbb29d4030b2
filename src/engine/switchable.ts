// An Engine whose implementation can be replaced while requests run: what SIGHUP uses to apply a new
// configuration (restriction lists, networks, domains, tables, sunset dates) without dropping a connection.
//
// A decision runs entirely on the engine that was current when it started: decide() takes the reference
// once, so no decision ever mixes the old and the new configuration. The replaced engine is closed (its
// tables released) only after the decisions already running on it have finished, bounded by `drainMs`.

import type { Decision, DecisionRequest, Engine } from './types.ts';

/** An engine and the number of decisions running on it. */
interface Slot {
  readonly engine: Engine;
  running: number;
}

export class SwitchableEngine implements Engine {
  #slot: Slot;
  #closed = false;

  constructor(initial: Engine) {
    this.#slot = { engine: initial, running: 0 };
  }

  get current(): Engine {
    return this.#slot.engine;
  }

  decide(req: DecisionRequest): Promise<Decision> {
    // on every request of every front end: a counter on the slot, no async wrapper
    const slot = this.#slot;
    slot.running++;
    let p: Promise<Decision>;
    try {
      p = slot.engine.decide(req);
    } catch (err) {
      slot.running--;
      return Promise.reject(err);
    }
    const done = () => void slot.running--;
    p.then(done, done);
    return p;
  }

  describe(): { relay: string[]; sender: string[] } {
    return this.#slot.engine.describe();
  }

  /**
   * Makes `next` current at once (every decision that starts from now on uses it). The previous engine is
   * closed in the background once its running decisions are done (at most `drainMs`); `retired` settles then.
   */
  swap(next: Engine, drainMs = 30_000): { retired: Promise<void> } {
    const old = this.#slot;
    if (old.engine === next) return { retired: Promise.resolve() };
    this.#slot = { engine: next, running: 0 };
    const retired = (async () => {
      const deadline = Date.now() + drainMs;
      while (old.running > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await old.engine.close().catch(() => undefined);
    })();
    return { retired };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#slot.engine.close();
  }
}
