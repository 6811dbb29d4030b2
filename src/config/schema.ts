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

export const PREFIX_NAMES = ['syslog', 'rfc3339', 'logpath', 'tai64n', 'none'] as const;

/** One [[watch]] table: where login lines come from and how to read them. */
export const watchSchema = z
  .strictObject({
    path: z.string().min(1).optional(),
    journald: z.boolean().optional(),
    stdin: z.boolean().optional(),
    unit: z.string().min(1).optional(),
    identifier: z.string().min(1).optional(),
    journal_directory: z.string().min(1).optional(),
    format: z.string().min(1),
    prefix: z.enum(PREFIX_NAMES).optional(),
    ident: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
    pattern: z.string().min(1).optional(),
    track_logout: z.boolean().default(false),
    start_at: z.enum(['start', 'end']).default('start'),
  })
  .superRefine((w, ctx) => {
    const kinds = [w.path !== undefined, w.journald === true, w.stdin === true].filter(Boolean).length;
    if (kinds !== 1) ctx.addIssue({ code: 'custom', message: 'set exactly one of path, journald = true, stdin = true' });
    if ((w.unit !== undefined || w.identifier !== undefined || w.journal_directory !== undefined) && w.journald !== true) {
      ctx.addIssue({ code: 'custom', message: 'unit, identifier and journal_directory apply only with journald = true' });
    }
    if (w.journald === true && w.prefix !== undefined) ctx.addIssue({ code: 'custom', message: 'prefix does not apply to journald (its fields carry time and program)' });
  });

/** One [[listen]] table: an SMTP listener and its role (Postfix master.cf: smtp, submission, submissions). */
export const listenSchema = z.strictObject({
  address: z.string().min(1),
  role: z.enum(['smtp', 'submission', 'submissions']),
});

const size = z.number().int().min(1);

/** [smtp]: the SMTP AUTH gateway (smtp-server in front, an upstream MTA behind). */
export const smtpSchema = z.strictObject({
  hostname: z.string().min(1).default('localhost'),
  relayhost: z.string().min(1).optional(),
  relayhost_tls: z.enum(['none', 'starttls', 'tls']).default('none'),
  relayhost_auth: z.strictObject({ username: z.string().min(1), password: z.string().min(1) }).optional(),
  relayhost_timeout: duration('relayhost_timeout').default(60).pipe(z.number().int().min(1)),
  relayhost_pool: z.number().int().min(1).max(100).default(8),
  tls_cert: z.string().min(1).optional(),
  tls_key: z.string().min(1).optional(),
  tls_auth_only: z.boolean().default(true),
  broken_sasl_auth_clients: z.boolean().default(false),
  authenticated_header: z.boolean().default(false),
  message_size_limit: size.default(10_240_000),
  recipient_limit: size.default(1000),
  client_limit: size.default(100),
  client_connection_limit: size.default(50),
  idle_timeout: duration('idle_timeout').default(300).pipe(z.number().int().min(1)),
  bare_newline: z.enum(['reject', 'normalize']).default('reject'),
  xforward: z.boolean().default(true),
  peername_lookup: z.boolean().default(true),
  greeting_delay: duration('greeting_delay').default(0),
});

/** [auth]: the SASL backend the gateway checks AUTH against, and the brute-force throttle. */
export const authSchema = z.strictObject({
  backend: z.enum(['passwd-file', 'dovecot', 'saslauthd']).optional(),
  path: z.string().min(1).optional(),
  mechanisms: z.array(z.enum(['PLAIN', 'LOGIN', 'CRAM-MD5'])).min(1).default(['PLAIN', 'LOGIN']),
  timeout: duration('timeout').default(20).pipe(z.number().int().min(1)),
  service: z.string().min(1).default('smtp'),
  realm: z.string().default(''),
  throttle_failures: size.default(5),
  throttle_window: duration('throttle_window').default(600).pipe(z.number().int().min(1)),
  throttle_lockout: duration('throttle_lockout').default(900).pipe(z.number().int().min(1)),
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
  watch: z.array(watchSchema).default([]),
  listen: z.array(listenSchema).default([]),
  smtp: smtpSchema.prefault({}),
  auth: authSchema.prefault({}),
});

export type WatchConfig = Readonly<z.output<typeof watchSchema>>;
export type ListenConfig = Readonly<z.output<typeof listenSchema>>;
export type SmtpConfig = Readonly<z.output<typeof smtpSchema>>;
export type AuthConfig = Readonly<z.output<typeof authSchema>>;
export type Config = Readonly<z.output<typeof configSchema>> & {
  readonly store: Readonly<z.output<typeof storeSchema>>;
  readonly watch: readonly WatchConfig[];
  readonly listen: readonly ListenConfig[];
  readonly smtp: SmtpConfig;
  readonly auth: AuthConfig;
};

/** One row per option: its TOML key (dotted inside tables), default as TOML text, and what it does. */
export interface OptionDoc {
  readonly key: string;
  readonly default: string;
  readonly doc: string;
  /** true when the option has no default: `default` is an example value */
  readonly example?: boolean;
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
  { key: 'store.path', default: '"<data_dir>/map"', doc: 'Directory of the LMDB access map.', example: true },
  { key: 'store.map_size', default: '1073741824', doc: 'Maximum LMDB map size in bytes (1 GiB holds several million grants).' },
  { key: 'watch.path', default: '"/var/log/mail.log"', doc: 'A log file (or a glob in its last component, e.g. "/var/log/dovecot/*.log") to follow; rotation-safe and resumable. One [[watch]] per source.', example: true },
  { key: 'watch.journald', default: 'false', doc: 'Read the systemd journal instead (journalctl -f -o json), resuming from the saved cursor.', example: true },
  { key: 'watch.stdin', default: 'false', doc: 'Read log lines from standard input (e.g. a syslog pipe).', example: true },
  { key: 'watch.unit', default: '"dovecot.service"', doc: 'journald only: the systemd unit to read (journalctl -u).', example: true },
  { key: 'watch.identifier', default: '"dovecot"', doc: 'journald only: the syslog identifier to read (journalctl -t).', example: true },
  { key: 'watch.journal_directory', default: '"/var/log/journal"', doc: 'journald only: read this journal directory (journalctl -D) instead of the system journal.', example: true },
  { key: 'watch.format', default: '"dovecot"', doc: 'The log format: dovecot, courier, cyrus, uw-imap, qpopper, popa3d, vm-pop3d, perdition, solid-pop3d, teapop, gnu-pop3d, vpopmail, cucipop (see README "Log formats").', example: true },
  { key: 'watch.prefix', default: '"syslog"', doc: 'How lines start: syslog (Nov 21 16:33:39 host ident:), rfc3339, logpath (Dovecot log_path), tai64n, none.', example: true },
  { key: 'watch.ident', default: '"dovecot"', doc: "Syslog program name(s) to accept, replacing the format's defaults (Dovecot's is its instance_name).", example: true },
  { key: 'watch.pattern', default: '"^...(?<ip>[0-9a-fA-F:.]+)...$"', doc: 'An extra login pattern of your own, tried first: anchored with ^ and $, capturing (?<ip>...) and optionally (?<user>...).', example: true },
  { key: 'watch.track_logout', default: 'false', doc: 'Keep the IP authorized while an IMAP/POP session stays open; grace then counts from logout (Dovecot, Courier).' },
  { key: 'watch.start_at', default: '"start"', doc: 'Without a saved position, read a file from its start (old lines expire by their own time) or its end.' },
  { key: "listen.address", default: "\"127.0.0.1:2525\"", doc: "Address and port of an SMTP listener (\"127.0.0.1:2525\", \"[::1]:587\"). One [[listen]] per listener; none by default.", example: true },
  { key: "listen.role", default: "\"submission\"", doc: "smtp (port 25 style: AUTH optional, relay decided by relay_restrictions), submission (587: AUTH or a grant required), submissions (465: implicit TLS).", example: true },
  { key: "smtp.hostname", default: "\"localhost\"", doc: "Name in the greeting, EHLO reply and Received: header." },
  { key: "smtp.relayhost", default: "\"127.0.0.1:10025\"", doc: "Upstream MTA (host:port, IP literal) that receives every accepted message; required with [[listen]].", example: true },
  { key: "smtp.relayhost_tls", default: "\"none\"", doc: "TLS to the upstream: none, starttls, tls." },
  { key: "smtp.relayhost_auth", default: "{ username = \"relaygate\", password = \"secret\" }", doc: "SASL credentials for the upstream, if it wants them.", example: true },
  { key: "smtp.relayhost_timeout", default: "\"1m\"", doc: "How long to wait for the upstream before answering the client 451 4.4.1." },
  { key: "smtp.relayhost_pool", default: "8", doc: "Upstream connections kept open and reused." },
  { key: "smtp.tls_cert", default: "\"<data_dir>/tls/cert.pem\"", doc: "TLS certificate (PEM); without one, a self-signed pair is generated into data_dir on first start (and logged as such).", example: true },
  { key: "smtp.tls_key", default: "\"<data_dir>/tls/key.pem\"", doc: "TLS private key (PEM); reloaded on SIGHUP.", example: true },
  { key: "smtp.tls_auth_only", default: "true", doc: "Offer and accept AUTH only over TLS (loopback clients excepted)." },
  { key: "smtp.broken_sasl_auth_clients", default: "false", doc: "Also send the old \"250-AUTH=PLAIN LOGIN\" EHLO line for Outlook Express 4 / Exchange 5.0." },
  { key: "smtp.authenticated_header", default: "false", doc: "Add Postfix's (Authenticated sender: user) to the Received: header." },
  { key: "smtp.message_size_limit", default: "10240000", doc: "Largest message accepted, in bytes (SIZE)." },
  { key: "smtp.recipient_limit", default: "1000", doc: "Most recipients per message." },
  { key: "smtp.client_limit", default: "100", doc: "Most concurrent SMTP clients." },
  { key: "smtp.client_connection_limit", default: "50", doc: "Most concurrent connections from one client IP." },
  { key: "smtp.idle_timeout", default: "\"5m\"", doc: "Close a client connection idle this long." },
  { key: "smtp.bare_newline", default: "\"reject\"", doc: "Bare LF or CR in DATA: reject (550 5.5.2) or normalize to CRLF." },
  { key: "smtp.xforward", default: "true", doc: "Pass the real client name, address, HELO and protocol with XFORWARD when the upstream offers it." },
  { key: "smtp.peername_lookup", default: "true", doc: "Reverse-DNS the client address (turn off in tests and on busy hosts)." },
  { key: "smtp.greeting_delay", default: "\"0s\"", doc: "Hold the 220 greeting this long (smtp-server's early-talker check); 0 for submission." },
  { key: "auth.backend", default: "\"passwd-file\"", doc: "SASL backend: passwd-file (Dovecot format), dovecot (auth-client socket), saslauthd. None: AUTH is not offered.", example: true },
  { key: "auth.path", default: "\"/etc/relaygate/passwd\"", doc: "The passwd-file, the Dovecot auth socket (path or host:port), or saslauthd's mux socket.", example: true },
  { key: "auth.mechanisms", default: "[\"PLAIN\", \"LOGIN\"]", doc: "Mechanisms offered; CRAM-MD5 only with a backend that holds cleartext." },
  { key: "auth.timeout", default: "\"20s\"", doc: "A backend slower than this answers 454 4.7.0 Temporary authentication failure (above Dovecot's 15 s failure penalty)." },
  { key: "auth.service", default: "\"smtp\"", doc: "Service name sent to Dovecot and saslauthd." },
  { key: "auth.realm", default: "\"\"", doc: "Realm sent to saslauthd." },
  { key: "auth.throttle_failures", default: "5", doc: "Failed AUTHs per client IP (or username) within throttle_window before 421 4.7.0 and disconnect." },
  { key: "auth.throttle_window", default: "\"10m\"", doc: "Window in which failures are counted (each failure after the first also adds a growing delay)." },
  { key: "auth.throttle_lockout", default: "\"15m\"", doc: "How long a throttled client IP or username is refused." },
];

/** Every key the schema accepts, dotted, in schema order: the test compares it with OPTION_DOCS. */
export function schemaKeys(): string[] {
  const keys: string[] = [];
  for (const [k, v] of Object.entries(configSchema.shape)) {
    if (k === 'store') for (const sk of Object.keys(storeSchema.shape)) keys.push(`store.${sk}`);
    else if (k === 'watch') for (const sk of Object.keys(watchSchema.shape)) keys.push(`watch.${sk}`);
    else if (k === 'listen') for (const sk of Object.keys(listenSchema.shape)) keys.push(`listen.${sk}`);
    else if (k === 'smtp') for (const sk of Object.keys(smtpSchema.shape)) keys.push(`smtp.${sk}`);
    else if (k === 'auth') for (const sk of Object.keys(authSchema.shape)) keys.push(`auth.${sk}`);
    else if (v) keys.push(k);
  }
  return keys;
}
