// The message body on its way through the gateway: line endings checked (SMTP smuggling) and the
// Received: header that is prepended before the message goes upstream.
//
// Line endings (RFC 5321 §2.3.8: CR and LF only as CRLF). smtp-server ends DATA only at CRLF.CRLF but passes
// a bare LF or bare CR through to the message stream; an upstream MTA that treats `\n.\n` or `\r.\r` as the
// end of data would then see the rest as new SMTP commands (SMTP smuggling, CVE-2023-51766 and siblings).
// LineEndingGuard sees every byte before it may go upstream:
//   reject    (default, `smtp.bare_newline = "reject"`): the first bare LF or CR stops forwarding; the gateway
//             drops the upstream transaction and answers 550 5.5.2.
//   normalize: a bare LF or CR becomes CRLF. The dot-stuffing that nodemailer's DataStream applies on the
//             way out then escapes a line that is a single `.`, so nothing ends the upstream DATA early.
// A CR at the end of one chunk is held back until the next chunk shows whether an LF follows.
//
// Received: (RFC 5321 §4.4, RFC 3848 `with` keywords, Postfix's layout and `(Authenticated sender: x)`
// comment from smtpd_sasl_authenticated_header). The HELO name, the SASL user and the recipient are
// client-supplied: anything outside printable ASCII, and the characters that would end a comment or an
// angle address, is replaced by `?`, and the header is folded on fixed boundaries, so a client can neither
// add a header line nor break the structure of this one.
// Security: trusts nothing in the body; it only inspects bytes and never interprets headers.

export type BareNewlineMode = 'reject' | 'normalize';

const CR = 0x0d;
const LF = 0x0a;
const CRLF = Buffer.from('\r\n');

export class LineEndingGuard {
  readonly mode: BareNewlineMode;
  /** set once a bare CR or LF was seen in reject mode; nothing is returned after that */
  violation: 'bare LF' | 'bare CR' | undefined;
  #heldCr = false;

  constructor(mode: BareNewlineMode) {
    this.mode = mode;
  }

  /** The bytes of `chunk` that may go upstream (possibly empty). */
  push(chunk: Buffer): Buffer {
    if (this.violation !== undefined || chunk.length === 0) return EMPTY;
    const out: Buffer[] = [];
    let start = 0;
    let i = 0;
    if (this.#heldCr) {
      this.#heldCr = false;
      if (chunk[0] === LF) {
        out.push(CRLF);
        start = i = 1;
      } else if (!this.bare('bare CR', out)) {
        return EMPTY;
      }
    }
    for (; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (b === CR) {
        if (i + 1 === chunk.length) {
          // decided by the next chunk
          if (i > start) out.push(chunk.subarray(start, i));
          this.#heldCr = true;
          return out.length === 1 ? out[0]! : Buffer.concat(out);
        }
        if (chunk[i + 1] === LF) {
          i++;
          continue;
        }
        if (i > start) out.push(chunk.subarray(start, i));
        if (!this.bare('bare CR', out)) return EMPTY;
        start = i + 1;
      } else if (b === LF) {
        if (i > start) out.push(chunk.subarray(start, i));
        if (!this.bare('bare LF', out)) return EMPTY;
        start = i + 1;
      }
    }
    if (start === 0 && out.length === 0) return chunk;
    if (start < chunk.length) out.push(chunk.subarray(start));
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  /** At the end of the message: whatever is still held back. */
  end(): Buffer {
    if (!this.#heldCr || this.violation !== undefined) return EMPTY;
    this.#heldCr = false;
    const out: Buffer[] = [];
    return this.bare('bare CR', out) ? CRLF : EMPTY;
  }

  /** Records a bare CR/LF: true (and a CRLF appended) when normalizing, false when rejecting. */
  private bare(kind: 'bare LF' | 'bare CR', out: Buffer[]): boolean {
    if (this.mode === 'reject') {
      this.violation = kind;
      return false;
    }
    out.push(CRLF);
    return true;
  }
}

const EMPTY = Buffer.alloc(0);

export interface ReceivedFields {
  /** HELO/EHLO argument, if any */
  readonly helo: string | undefined;
  /** verified reverse name or undefined */
  readonly clientName: string | undefined;
  readonly clientIp: string;
  /** our hostname */
  readonly by: string;
  /** RFC 3848: SMTP, ESMTP, ESMTPA, ESMTPS, ESMTPSA */
  readonly with: string;
  readonly id: string;
  /** the SASL user, when `smtp.authenticated_header` is on and the client authenticated */
  readonly authenticatedSender?: string | undefined;
  /** TLS details for the `(using ...)` comment */
  readonly tls?: { readonly version: string; readonly cipher: string } | undefined;
  /** the single recipient (Postfix names it only when there is exactly one) */
  readonly singleRecipient?: string | undefined;
  readonly date: Date;
}

/** Printable ASCII without the characters that end a comment, an address or a header. */
function headerSafe(s: string, max = 255): string {
  const cut = s.length > max ? s.slice(0, max) : s;
  return cut.replace(/[^\x21-\x7e]|[()<>\\";]/g, '?');
}

/** `Received: from helo (name [ip])\r\n\t(...)\r\n\tby host (relaygate) with ESMTPSA id X\r\n\tfor <r>; date\r\n` */
export function receivedHeader(f: ReceivedFields): Buffer {
  const helo = f.helo !== undefined && f.helo !== '' ? headerSafe(f.helo) : 'unknown';
  const name = f.clientName !== undefined && f.clientName !== '' ? headerSafe(f.clientName) : 'unknown';
  const ip = f.clientIp.includes(':') ? `IPv6:${f.clientIp}` : f.clientIp;
  let h = `Received: from ${helo} (${name} [${headerSafe(ip)}])\r\n`;
  if (f.tls !== undefined) h += `\t(using ${headerSafe(f.tls.version, 32)} with cipher ${headerSafe(f.tls.cipher, 64)})\r\n`;
  if (f.authenticatedSender !== undefined) h += `\t(Authenticated sender: ${headerSafe(f.authenticatedSender)})\r\n`;
  h += `\tby ${headerSafe(f.by)} (relaygate) with ${headerSafe(f.with, 16)} id ${headerSafe(f.id, 32)}`;
  if (f.singleRecipient !== undefined) h += `\r\n\tfor <${headerSafe(f.singleRecipient, 320)}>`;
  h += `; ${rfc5322Date(f.date)}\r\n`;
  return Buffer.from(h, 'latin1');
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** RFC 5322 §3.3 date in UTC: `Sat, 21 Nov 2025 20:00:00 +0000 (UTC)`. */
export function rfc5322Date(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${DAYS[d.getUTCDay()]}, ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000 (UTC)`;
}
