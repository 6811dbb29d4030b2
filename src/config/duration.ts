// Durations in configuration: a number of seconds, or a string with Postfix's time units
// (`90s`, `30m`, `2h`, `1d`, `1w`; a bare number string means seconds).
// Security: the value is operator input; anything else is a configuration error, not a guess.

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** Returns whole seconds, or undefined when the text is not a duration. */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const m = /^\s*(\d{1,9})\s*([smhdw]?)\s*$/i.exec(value);
  if (!m) return undefined;
  return Number(m[1]) * UNITS[(m[2] || 's').toLowerCase()]!;
}

/** The shortest exact spelling of a number of seconds, for `config show`. */
export function formatDuration(seconds: number): string {
  for (const [unit, size] of [['w', 604800], ['d', 86400], ['h', 3600], ['m', 60]] as const) {
    if (seconds >= size && seconds % size === 0) return `${seconds / size}${unit}`;
  }
  return `${seconds}s`;
}
