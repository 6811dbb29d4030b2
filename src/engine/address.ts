// The one envelope-address parser: every sender and recipient the engine looks at goes through here.
//
// It splits at the last `@` that is outside a quoted string (RFC 5321 §4.1.2), unquotes the local part,
// lower-cases the domain and strips one trailing dot (Postfix does the same), and recognizes the null
// sender, address literals (`[192.0.2.1]`) and sender-specified routing.
// Security: the address is untrusted. Sender-specified routing (`%`, `!` or `@` inside the local part,
// including a quoted `"bob@remote"@example.com`, and RFC 821 source routes `@hop:user@domain`) makes
// Postfix's resolver flag the address ROUTED; with allow_untrusted_routing=no such an address is never an
// authorized destination, or relaygate would forward `bob%remote.example@ourdomain` to the outside world.

export interface ParsedAddress {
  /** the address as given, without surrounding angle brackets */
  readonly raw: string;
  /** the null sender (`''` or `<>`) */
  readonly isNull: boolean;
  /** local part with quotes and backslash escapes removed */
  readonly local: string;
  /** local part as written (quotes kept), used to build lookup keys */
  readonly localRaw: string;
  /** lower case, one trailing dot removed; '' when there is no `@` */
  readonly domain: string;
  readonly hasDomain: boolean;
  /** domain is an address literal such as `[192.0.2.1]` or `[IPv6:2001:db8::1]` */
  readonly literal: boolean;
  /** sender-specified routing: `%`, `!` or `@` in the local part, or a source route */
  readonly routed: boolean;
  /** syntactically usable: non-empty local part, non-empty domain after `@`, no stray quotes or controls */
  readonly valid: boolean;
}

const NULL_ADDRESS: ParsedAddress = Object.freeze({
  raw: '',
  isNull: true,
  local: '',
  localRaw: '',
  domain: '',
  hasDomain: false,
  literal: false,
  routed: false,
  valid: true,
});

export function parseAddress(input: string): ParsedAddress {
  let raw = input;
  if (raw.length >= 2 && raw.charCodeAt(0) === 60 /* < */ && raw.charCodeAt(raw.length - 1) === 62 /* > */) raw = raw.slice(1, -1);
  if (raw === '') return NULL_ADDRESS;

  // Find the last unquoted '@' and unquote the local part in one pass.
  let at = -1;
  let inQuote = false;
  let quoted = false;
  let broken = false;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c < 32 || c === 127) broken = true;
    if (c === 92 /* \ */ && inQuote) {
      i++;
      continue;
    }
    if (c === 34 /* " */) {
      inQuote = !inQuote;
      quoted = true;
    } else if (c === 64 /* @ */ && !inQuote) {
      at = i;
    }
  }
  if (inQuote) broken = true;

  const localRaw = at === -1 ? raw : raw.slice(0, at);
  let domain = at === -1 ? '' : raw.slice(at + 1).toLowerCase();
  if (domain.endsWith('.')) domain = domain.slice(0, -1);
  const local = quoted ? unquote(localRaw) : localRaw;
  const routed = local.includes('@') || local.includes('%') || local.includes('!') || localRaw.startsWith('@');
  const literal = domain.length >= 2 && domain.charCodeAt(0) === 91 /* [ */ && domain.charCodeAt(domain.length - 1) === 93; /* ] */
  const valid = !broken && local !== '' && (at === -1 || domain !== '') && !/\s/.test(domain);
  return { raw, isNull: false, local, localRaw, domain, hasDomain: at !== -1, literal, routed, valid };
}

function unquote(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch === '"') continue;
    if (ch === '\\' && i + 1 < s.length) {
      out += s[++i];
      continue;
    }
    out += ch;
  }
  return out;
}

/** `local@domain` with the domain normalized (the form access tables are keyed by), or `local`. */
export function addressKey(a: ParsedAddress): string {
  return a.hasDomain ? `${a.localRaw}@${a.domain}` : a.localRaw;
}
