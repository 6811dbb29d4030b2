// An Engine whose implementation can be replaced while requests run: what SIGHUP uses to apply a new
// configuration (restriction lists, networks, domains, tables, sunset dates) without dropping a connection.
//
// A decision runs entirely on the engine that was current when it started: decide() takes the reference
// once, so no decision ever mixes the old and the new configuration. The replaced engine is closed (its
// tables released) only after the decisions already running on it have finished, bounded by `drainMs`.

import type { Decision, DecisionRequest, Engine } from './types.ts';

export class SwitchableEngine implements Engine {
  #current: Engine;
  #inFlight = new Map<Engine, number>();
  #closed = false;

  constructor(initial: Engine) {
    this.#current = initial;
  }

  get current(): Engine {
    return this.#current;
  }

  async decide(req: DecisionRequest): Promise<Decision> {
    const e = this.#current;
    this.#inFlight.set(e, (this.#inFlight.get(e) ?? 0) + 1);
    try {
      return await e.decide(req);
    } finally {
      const n = this.#inFlight.get(e)! - 1;
      if (n === 0) this.#inFlight.delete(e);
      else this.#inFlight.set(e, n);
    }
  }

  describe(): { relay: string[]; sender: string[] } {
    return this.#current.describe();
  }

  /**
   * Makes `next` current at once (every decision that starts from now on uses it). The previous engine is
   * closed in the background once its running decisions are done (at most `drainMs`); `retired` settles then.
   */
  swap(next: Engine, drainMs = 30_000): { retired: Promise<void> } {
    const old = this.#current;
    this.#current = next;
    if (old === next) return { retired: Promise.resolve() };
    const retired = (async () => {
      const deadline = Date.now() + drainMs;
      while ((this.#inFlight.get(old) ?? 0) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await old.close().catch(() => undefined);
    })();
    return { retired };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#current.close();
  }
}
