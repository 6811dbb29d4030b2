// Postfix-shaped fragments used in log lines: `name[addr]`, `<address>`.
// Security: values come from clients; control characters are escaped so one log line stays one line.

/** Escape control characters (CR, LF, NUL, ...) so a hostile value cannot forge a second log line. */
export function printable(value: string): string {
  // eslint-disable-next-line no-control-regex
  return value.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** Postfix's `name[addr]` client notation; name is `unknown` when there is no verified hostname. */
export function clientLabel(ip: string, name?: string): string {
  return `${printable(name && name.length > 0 ? name : 'unknown')}[${printable(ip)}]`;
}

/** `<address>` as Postfix writes envelope addresses (the null sender is `<>`). */
export function angle(address: string | undefined): string {
  return `<${printable(address ?? '')}>`;
}
