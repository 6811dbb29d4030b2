// One clock for the whole daemon, injected everywhere a time is needed so tests can move it.
// Times are milliseconds since the Unix epoch (UTC) throughout relaygate.

export type Clock = () => number;

export const systemClock: Clock = () => Date.now();

/** A clock a test can set and advance. */
export function manualClock(start: number): Clock & { set(t: number): void; advance(ms: number): void } {
  let now = start;
  const c = (() => now) as Clock & { set(t: number): void; advance(ms: number): void };
  c.set = (t: number) => {
    now = t;
  };
  c.advance = (ms: number) => {
    now += ms;
  };
  return c;
}
