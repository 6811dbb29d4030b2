// access(5) actions: what a value found in a check_*_access table means (Postfix check_table_result()),
// and the key sequences Postfix looks up for a client (check_namadr_access) and a sender (check_mail_access).
//
// Actions: OK / RELAY / all-numerical (= OK; DRAC stored a timestamp there), REJECT [text], DEFER [text],
// 4NN text / 5NN text (optionally starting with a DSN), DUNNO, DEFER_IF_PERMIT text, DEFER_IF_REJECT text,
// WARN text, and the restriction name `permit` (Postfix evaluates restriction names found in a table;
// `reject`, `defer` and `dunno` already equal the actions because names are case-insensitive).
// Anything else (FILTER, HOLD, DISCARD, REDIRECT, a lookup table, other restriction names) answers
// `451 4.3.5 Server configuration error` and logs a warning, as Postfix does for what it cannot do.
// Security: values come from the operator's tables, keys from the client. Keys for parent domains and
// partial IPs are tried only on tables that support them (not cidr), and never the hostname `unknown`.

import type { LookupTable } from '../tables/index.ts';
import { addressKey, type ParsedAddress } from './address.ts';
import type { RequestContext } from './context.ts';
import { makeReply, rejectedText, SERVER_CONFIGURATION_ERROR, splitDsn, type Outcome } from './outcome.ts';

/** Postfix defaults: access_map_reject_code, access_map_defer_code. */
const MAP_REJECT_CODE = 554;
const MAP_DEFER_CODE = 450;

export interface AccessWhere {
  readonly table: LookupTable;
  readonly key: string;
  /** what the reply names, e.g. `unknown[192.0.2.9]` or the sender */
  readonly name: string;
  /** `Client host`, `Sender address` */
  readonly replyClass: string;
}

const UNSUPPORTED = new Set(['FILTER', 'HOLD', 'DISCARD', 'REDIRECT', 'PREPEND', 'BCC', 'INFO', 'DELAY']);

/** Translates one table value into an outcome (Postfix check_table_result). */
export function accessAction(value: string, w: AccessWhere): Outcome {
  const trimmed = value.trim();
  const m = /^(\S+)\s*(.*)$/s.exec(trimmed);
  const cmd = (m?.[1] ?? '').toUpperCase();
  const rest = m?.[2] ?? '';
  const found = `${w.key} -> ${trimmed}`;

  if (cmd === 'DUNNO') return { kind: 'dunno', detail: found };
  if (cmd === 'OK' || cmd === 'RELAY' || cmd === 'PERMIT' || /^\d+$/.test(trimmed)) return { kind: 'ok', detail: found };
  if (cmd === 'REJECT') {
    const d = splitDsn(rest, '5.7.1');
    return { kind: 'reply', reply: makeReply(MAP_REJECT_CODE, d.dsn, rejectedText(w.name, w.replyClass, d.text || 'Access denied')), detail: found };
  }
  if (cmd === 'DEFER') {
    const d = splitDsn(rest, '4.7.1');
    return { kind: 'reply', reply: makeReply(MAP_DEFER_CODE, d.dsn, rejectedText(w.name, w.replyClass, d.text || 'Access denied')), detail: found };
  }
  if (cmd === 'DEFER_IF_PERMIT' || cmd === 'DEFER_IF_REJECT') {
    const d = splitDsn(rest, '4.7.1');
    const reply = makeReply(MAP_DEFER_CODE, d.dsn, rejectedText(w.name, w.replyClass, d.text || 'Service unavailable'));
    return { kind: cmd === 'DEFER_IF_PERMIT' ? 'defer_if_permit' : 'defer_if_reject', reply, detail: found };
  }
  if (cmd === 'WARN') return { kind: 'warn', text: rest || `${w.replyClass} triggers WARN action`, detail: found };
  // 4NN text / 5NN text: the text is required, else "450" alone is all-numerical and means OK (above).
  if (/^[45]\d\d$/.test(cmd) && rest !== '') {
    const code = Number(cmd);
    const d = splitDsn(rest, `${cmd[0]}.7.1`);
    return { kind: 'reply', reply: makeReply(code, d.dsn, rejectedText(w.name, w.replyClass, d.text || 'Access denied')), detail: found };
  }
  const why = UNSUPPORTED.has(cmd)
    ? `action ${cmd} is not supported by relaygate (it has no queue)`
    : trimmed.includes(':')
      ? 'lookup tables inside access tables are not supported'
      : `unknown action ${JSON.stringify(trimmed)}`;
  return {
    kind: 'fail',
    reply: SERVER_CONFIGURATION_ERROR,
    detail: `${w.table.spec}: entry ${JSON.stringify(w.key)}: ${why}; answering 451 4.3.5 until the table is fixed`,
  };
}

/** Parent domains Postfix tries for `a.b.example.com`: `b.example.com`, `example.com`, `com`. */
function* parentDomains(domain: string): Generator<string> {
  for (let dot = domain.indexOf('.'); dot !== -1 && dot + 1 < domain.length; dot = domain.indexOf('.', dot + 1)) {
    yield domain.slice(dot + 1);
  }
}

/** `192.0.2.9` → `192.0.2`, `192.0`, `192`; `2001:db8::1` → `2001:db8:`, `2001:db8`, `2001` (Postfix split_at_right). */
export function partialAddressKeys(ip: string): string[] {
  const delim = ip.includes(':') ? ':' : '.';
  const out: string[] = [];
  for (let end = ip.lastIndexOf(delim); end > 0; end = ip.lastIndexOf(delim, end - 1)) out.push(ip.slice(0, end));
  return out;
}

async function firstHit(ctx: RequestContext, table: LookupTable, keys: Iterable<string>, name: string, replyClass: string, subject: string): Promise<Outcome | undefined> {
  for (const key of keys) {
    const value = await ctx.lookup(table, key, subject);
    if (value !== undefined) return accessAction(value, { table, key, name, replyClass });
  }
  return undefined;
}

/** check_client_access: hostname (and parents) first, then the IP (and its partial forms), as Postfix. */
export async function clientAccess(ctx: RequestContext, table: LookupTable): Promise<Outcome | undefined> {
  const name = ctx.namaddr;
  const keys: string[] = [];
  let host = ctx.clientName.toLowerCase();
  if (host.endsWith('.')) host = host.slice(0, -1);
  // `unknown` is what Postfix writes when there is no verified name; a table must never match it.
  if (host !== 'unknown' && host !== '') {
    keys.push(host);
    if (table.partialKeys) keys.push(...parentDomains(host));
  }
  if (ctx.ip !== undefined) {
    keys.push(ctx.ip);
    if (table.partialKeys) keys.push(...partialAddressKeys(ctx.ip));
  }
  return firstHit(ctx, table, keys, name, 'Client host', name);
}

/** Keys check_sender_access / sender-login lookups use for an address (Postfix check_mail_access). */
export function senderAccessKeys(a: ParsedAddress, partial: boolean): string[] {
  if (a.isNull) return ['<>']; // smtpd_null_access_lookup_key
  const keys = [addressKey(a)];
  if (!partial) return keys;
  if (a.hasDomain) {
    keys.push(a.domain);
    if (!a.literal) keys.push(...parentDomains(a.domain));
  }
  keys.push(`${a.localRaw}@`);
  return keys;
}

export async function senderAccess(ctx: RequestContext, table: LookupTable, sender: ParsedAddress): Promise<Outcome | undefined> {
  const name = sender.raw;
  return firstHit(ctx, table, senderAccessKeys(sender, table.partialKeys), name, 'Sender address', name);
}
