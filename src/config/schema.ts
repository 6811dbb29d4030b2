// The configuration schema: every key relaygate reads, its type, its default and one line of documentation.
//
// Keys use Postfix's names and meanings where Postfix has one (mynetworks, mydestination, relay_domains,
// *_restrictions, sender_login_maps). Unknown keys are errors (a typo must not silently fall back to a
// default). OPTION_DOCS drives contrib/relaygate.toml and README's reference; test/config keeps them in step.
// Security: defaults are safe on their own: loopback only, data under ./var/relaygate, no root needed,
// and a relay list that rejects unauthorized destinations.

import { z } from 'zod';
import { parseDuration } from './duration.ts';

const duration = (what: string) =>
  z.union([z.number(), z.string()]).transform((v, ctx) => {
    const s = parseDuration(v);
    if (s === undefined) {
      ctx.addIssue({ code: 'custom', message: `${what}: expected seconds or a duration like "30m", "2h", "1d"` });
      return z.NEVER;
    }
    return s;
  });

const stringList = z.array(z.string().min(1, 'empty string in list'));

export const DEFAULT_RELAY_RESTRICTIONS = [
  'permit_mynetworks',
  'permit_sasl_authenticated',
  'permit_pop_before_smtp',
  'reject_unauth_destination',
];

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const storeSchema = z.strictObject({
  type: z.enum(['lmdb']).default('lmdb'),
  path: z.string().min(1).optional(),
  map_size: z.number().int().min(1 << 20).default(1 << 30),
});

export const configSchema = z.strictObject({
  data_dir: z.string().min(1).default('./var/relaygate'),
  grace: duration('grace').default(1800).pipe(z.number().int().min(1, 'grace must be at least 1 second')),
  mynetworks: stringList.default(['127.0.0.0/8', '[::1]/128']),
  never_authorize: stringList.default(['0.0.0.0/8', '224.0.0.0/4', '255.255.255.255/32', '::/128', 'ff00::/8']),
  mydestination: stringList.default(['localhost']),
  relay_domains: stringList.default([]),
  relay_restrictions: stringList.default(DEFAULT_RELAY_RESTRICTIONS),
  sender_restrictions: stringList.default([]),
  sender_login_maps: stringList.default([]),
  sweep_interval: duration('sweep_interval').default(60).pipe(z.number().int().min(1, 'sweep_interval must be at least 1 second')),
  log_level: z.enum(LOG_LEVELS).default('info'),
  store: storeSchema.prefault({}),
});

export type Config = Readonly<z.output<typeof configSchema>> & { readonly store: Readonly<z.output<typeof storeSchema>> };

/** One row per option: its TOML key (dotted inside tables), default as TOML text, and what it does. */
export interface OptionDoc {
  readonly key: string;
  readonly default: string;
  readonly doc: string;
}

export const OPTION_DOCS: readonly OptionDoc[] = [
  { key: 'data_dir', default: '"./var/relaygate"', doc: 'Directory for the access map and state; relative paths are relative to the working directory.' },
  { key: 'grace', default: '"30m"', doc: 'How long a POP/IMAP login lets its IP relay, sliding from the latest login (seconds or 30m/2h/1d).' },
  { key: 'mynetworks', default: '["127.0.0.0/8", "[::1]/128"]', doc: 'Trusted client networks (permit_mynetworks); logins from them are never recorded as grants.' },
  { key: 'never_authorize', default: '["0.0.0.0/8", "224.0.0.0/4", "255.255.255.255/32", "::/128", "ff00::/8"]', doc: 'Networks that never receive a grant, whatever a log or feed says (e.g. your NAT gateways, shared proxies).' },
  { key: 'mydestination', default: '["localhost"]', doc: 'Domains delivered locally: mail to them is accepted from anyone (exact match, like Postfix).' },
  { key: 'relay_domains', default: '[]', doc: 'Domains relayed for anyone; "example.com" also matches subdomains, ".example.com" only subdomains.' },
  { key: 'relay_restrictions', default: '["permit_mynetworks", "permit_sasl_authenticated", "permit_pop_before_smtp", "reject_unauth_destination"]', doc: 'Checked at RCPT, in order, first non-DUNNO wins (Postfix smtpd_relay_restrictions); must contain a reject.' },
  { key: 'sender_restrictions', default: '[]', doc: 'Checked at MAIL FROM, in order (Postfix smtpd_sender_restrictions), e.g. ["reject_sender_login_mismatch"].' },
  { key: 'sender_login_maps', default: '[]', doc: 'Tables (type:name) mapping a sender address or @domain to the logins that own it, for *_sender_login_mismatch.' },
  { key: 'sweep_interval', default: '"1m"', doc: 'How often expired grants are removed from the map (they stop counting at expiry regardless).' },
  { key: 'log_level', default: '"info"', doc: 'One of fatal, error, warn, info, debug, trace, silent.' },
  { key: 'store.type', default: '"lmdb"', doc: 'Access map backend: "lmdb" (embedded, the default).' },
  { key: 'store.path', default: '"<data_dir>/map"', doc: 'Directory of the LMDB access map.' },
  { key: 'store.map_size', default: '1073741824', doc: 'Maximum LMDB map size in bytes (1 GiB holds several million grants).' },
];

/** Every key the schema accepts, dotted, in schema order: the test compares it with OPTION_DOCS. */
export function schemaKeys(): string[] {
  const keys: string[] = [];
  for (const [k, v] of Object.entries(configSchema.shape)) {
    if (k === 'store') for (const sk of Object.keys(storeSchema.shape)) keys.push(`store.${sk}`);
    else if (v) keys.push(k);
  }
  return keys;
}
