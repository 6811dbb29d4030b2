// The configuration schema: every key relaygate reads, its type, its default and one line of documentation.
//
// Keys use Postfix's names and meanings where Postfix has one (mynetworks, mydestination, relay_domains,
// *_restrictions, sender_login_maps). Unknown keys are errors (a typo must not silently fall back to a
// default). OPTION_DOCS drives contrib/relaygate.toml and README's reference; test/config keeps them in step.
// Security: defaults are safe on their own: loopback only, data under ./var/relaygate, no root needed,
// and a relay list that rejects unauthorized destinations.

import { DEFAULT_SUNSET_TEXT } from '../engine/sunset.ts';
import { z } from 'zod';
import { parseDuration } from './duration.ts';
import { FEEDER_ID_RE, MIN_SECRET_BYTES, MAX_SECRET_BYTES } from '../feeds/hmac.ts';

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
  type: z.enum(['lmdb', 'redis']).default('lmdb'),
  path: z.string().min(1).optional(),
  map_size: z.number().int().min(1 << 20).default(1 << 30),
  // type = "redis" (src/store/redis-map.ts); checked together by storeConfigProblems (src/store/config.ts)
  url: z.string().min(1).optional(),
  key_prefix: z.string().min(1).max(100).default('relaygate:'),
  timeout: duration('timeout').default(1).pipe(z.number().int().min(1).max(60)),
  node_name: z.string().min(1).max(100).optional(),
  cluster: z.boolean().default(false),
  sentinel_master: z.string().min(1).optional(),
  nodes: stringList.default([]),
  redis: z.record(z.string(), z.unknown()).optional(),
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
/** [http]: the operations listener (/metrics, /healthz, status page). */
export const httpSchema = z.strictObject({
  listen: z.string().min(1).optional(),
  allow: stringList.default(['127.0.0.0/8', '[::1]/128']),
});

export const smtpSchema = z.strictObject({
  hostname: z.string().min(1).default('localhost'),
  relayhost: z.string().min(1).optional(),
  relayhost_tls: z.enum(['none', 'starttls', 'tls']).default('none'),
  relayhost_auth: z.strictObject({ username: z.string().min(1), password: z.string().min(1) }).optional(),
  relayhost_timeout: duration('relayhost_timeout').default(60).pipe(z.number().int().min(1)),
  relayhost_pool: z.number().int().min(1).max(100).default(20),
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

/** One address or a list of them (`"127.0.0.1:0"` or `["127.0.0.1:0", "[::1]:0"]`), as a list. */
const addressList = z
  .union([z.string().min(1), z.array(z.string().min(1))], { error: 'expected an address "ip:port" (IPv6: "[addr]:port") or a list of them' })
  .transform((v) => (typeof v === 'string' ? [v] : v));

/** [drac]: the DRAC-compatible RPC server (src/feeds/drac.ts). A listen_udp or listen_tcp address turns it on. */
export const dracSchema = z.strictObject({
  listen_udp: addressList.optional(),
  listen_tcp: addressList.optional(),
  allow_file: z.string().min(1).optional(),
  allow: stringList.optional(),
  rpcbind: z.union([z.boolean(), z.literal('auto')], { error: 'expected true, false or "auto"' }).default('auto'),
  rate_limit: z.number().int().min(1).default(500),
});

/** [whoson]: the whoson server (src/feeds/whoson.ts). A listen address turns it on. */
export const whosonSchema = z.strictObject({
  listen: addressList.optional(),
  allow_login: stringList.optional(),
  allow_query: stringList.optional(),
  rate_limit: z.number().int().min(1).default(500),
});

/** [export]: a Postfix table kept in step with the grants by Postfix's postmap (src/export). `table` turns it on. */
export const exportSchema = z.strictObject({
  table: z.string().min(1).optional(),
  value: z.enum(['OK', 'expiry']).default('OK'),
  postmap: z.string().min(1).optional(),
  config_directory: z.string().min(1).optional(),
});

/** A unix socket's file mode: 0o666 in TOML, or "0666" / "666" as a string. */
const socketMode = z.union([z.number().int().min(0).max(0o777), z.string().regex(/^0?[0-7]{3}$/, 'expected an octal file mode like "0666"')]).default('0666');

/** [policy]: the Postfix policy delegation service (src/frontends/postfix/policy.ts). `listen` turns it on. */
export const policySchema = z.strictObject({
  listen: z.string().min(1).optional(),
  restrictions: stringList.default(['permit_pop_before_smtp']),
  tempfail_action: z.string().min(1).default('DEFER_IF_PERMIT Service temporarily unavailable'),
  prepend_header: z.string().min(1).optional(),
  clients: stringList.default(['127.0.0.0/8', '[::1]/128']),
  socket_mode: socketMode,
});

/** [socketmap]: Postfix socketmap tables (src/frontends/postfix/socketmap.ts). `listen` turns it on. */
export const socketmapSchema = z.strictObject({
  listen: z.string().min(1).optional(),
  grant_map: z.string().min(1).default('grant'),
  grant_action: z.string().min(1).default('OK'),
  sender_login_map: z.string().min(1).default('sender_login'),
  clients: stringList.default(['127.0.0.0/8', '[::1]/128']),
  socket_mode: socketMode,
});

/** A shared secret of the HTTP feed (`[feed] keys`, `push_key`): never echoed in an error message. */
const feedSecret = z
  .string()
  .refine((s) => Buffer.byteLength(s, 'utf8') >= MIN_SECRET_BYTES, `secret must be at least ${MIN_SECRET_BYTES} bytes (generate one with: openssl rand -hex 32)`)
  .refine((s) => Buffer.byteLength(s, 'utf8') <= MAX_SECRET_BYTES, `secret must be at most ${MAX_SECRET_BYTES} bytes`);
const feederId = z.string().regex(FEEDER_ID_RE, 'feeder id: 1-64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit');

/** [feed]: relaygate's signed HTTP feed (src/feeds/http-feed.ts). `listen` turns it on. */
export const feedSchema = z.strictObject({
  listen: z.string().min(1).optional(),
  tls_cert: z.string().min(1).optional(),
  tls_key: z.string().min(1).optional(),
  // `id = "secret"` or `id = ["new", "old"]` (rotation), always a list once parsed
  keys: z
    .record(
      feederId,
      z.preprocess((v) => (typeof v === 'string' ? [v] : v), z.array(feedSecret, 'expected a secret, or a list of one or two secrets').min(1).max(2, 'at most two secrets per feeder (the new one and the old one, while rotating)')),
      { error: (iss) => (iss.code === 'invalid_key' ? 'feeder id: 1-64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit' : undefined) },
    )
    .default({}),
  allow_plain_http: z.boolean().default(false),
  rate_limit: z.number().int().min(1).default(100),
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
  push_to: stringList.default([]),
  push_key_id: feederId.optional(),
  push_key: feedSecret.optional(),
  push_ca: z.string().min(1).optional(),
  push_local: z.boolean().default(false),
  push_outbox_limit: z.number().int().min(100).default(100_000),
  pop_before_smtp_sunset: z.record(z.string(), z.union([z.string(), z.date()])).default({}),
  pop_before_smtp_sunset_text: z.string().default(DEFAULT_SUNSET_TEXT),
  pop_before_smtp_sunset_header: z.string().default(''),
  usage_log: z.boolean().default(true),
  http: httpSchema.prefault({}),
  store: storeSchema.prefault({}),
  watch: z.array(watchSchema).default([]),
  listen: z.array(listenSchema).default([]),
  smtp: smtpSchema.prefault({}),
  auth: authSchema.prefault({}),
  export: exportSchema.prefault({}),
  policy: policySchema.prefault({}),
  socketmap: socketmapSchema.prefault({}),
  drac: dracSchema.prefault({}),
  whoson: whosonSchema.prefault({}),
  feed: feedSchema.prefault({}),
});

export type WatchConfig = Readonly<z.output<typeof watchSchema>>;
export type ListenConfig = Readonly<z.output<typeof listenSchema>>;
export type SmtpConfig = Readonly<z.output<typeof smtpSchema>>;
export type AuthConfig = Readonly<z.output<typeof authSchema>>;
export type ExportConfig = Readonly<z.output<typeof exportSchema>>;
export type PolicyConfig = Readonly<z.output<typeof policySchema>>;
export type SocketmapConfig = Readonly<z.output<typeof socketmapSchema>>;
export type DracConfig = Readonly<z.output<typeof dracSchema>>;
export type WhosonConfig = Readonly<z.output<typeof whosonSchema>>;
export type FeedConfig = Readonly<z.output<typeof feedSchema>>;
export type Config = Readonly<z.output<typeof configSchema>> & {
  readonly store: Readonly<z.output<typeof storeSchema>>;
  readonly watch: readonly WatchConfig[];
  readonly listen: readonly ListenConfig[];
  readonly smtp: SmtpConfig;
  readonly auth: AuthConfig;
  readonly export: ExportConfig;
  readonly policy: PolicyConfig;
  readonly socketmap: SocketmapConfig;
  readonly drac: DracConfig;
  readonly whoson: WhosonConfig;
  readonly feed: FeedConfig;
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
  { key: 'push_to', default: '[]', doc: 'Feed URLs of central relaygates (e.g. "https://192.0.2.25:8473/v1/logins"): every login the [[watch]] sources see is queued in an on-disk outbox and pushed, signed, to each of them.' },
  { key: 'push_key_id', default: '"pop1"', doc: "This host's feeder id: a key of the receiving side's [feed] keys.", example: true },
  { key: 'push_key', default: '"<64 hex digits: openssl rand -hex 32>"', doc: 'The shared secret for push_key_id (at least 32 bytes); never logged or shown by config show.', example: true },
  { key: 'push_ca', default: '"/etc/relaygate/feed-ca.pem"', doc: 'PEM CA certificate(s) to trust for https push_to URLs (e.g. a self-signed feed certificate); default: the system CAs.', example: true },
  { key: 'push_local', default: 'false', doc: "With push_to: also record the logins in this host's own access map (a POP host that is an SMTP host too)." },
  { key: 'push_outbox_limit', default: '100000', doc: 'Most logins held in the outbox while the central servers are unreachable; beyond it the oldest are dropped (and logged).' },
  { key: 'pop_before_smtp_sunset', default: '{ "example.com" = 2027-03-01 }', doc: 'Per domain, user (login or address) or "*": the day (00:00 UTC) from which a POP-before-SMTP grant no longer lets that user relay. Before it, relaying on a grant logs a warning (and adds pop_before_smtp_sunset_header); after it, the client gets pop_before_smtp_sunset_text as a 550 5.7.1.', example: true },
  { key: 'pop_before_smtp_sunset_text', default: '"Relaying after a POP/IMAP login ended on {date}: turn on SMTP authentication (username and password for outgoing mail) in your mail program"', doc: 'The reply text after the sunset date; {date} and {key} are replaced.' },
  { key: 'pop_before_smtp_sunset_header', default: '""', doc: 'A header field name (e.g. "X-Relay-Notice") the SMTP gateway adds to messages relayed on a grant before its sunset date; empty adds none.' },
  { key: 'usage_log', default: 'true', doc: 'Remember per user how they relayed (SASL, POP-before-SMTP, mynetworks) and when, in <data_dir>/usage, for `relaygate report` and the status page.' },
  { key: 'http.listen', default: '"127.0.0.1:9187"', doc: 'The operations HTTP listener: GET /metrics (Prometheus), /healthz (store, sources, upstream; 200 or 503) and / (read-only status page). Off unless set.', example: true },
  { key: 'http.allow', default: '["127.0.0.0/8", "[::1]/128"]', doc: 'Client networks that may use the HTTP listener; everyone else gets 403. The status page shows user names and client IPs.' },
  { key: 'store.type', default: '"lmdb"', doc: 'Access map backend: "lmdb" (embedded, the default) or "redis" (shared by several SMTP nodes; see README "Several SMTP nodes: Redis").' },
  { key: 'store.path', default: '"<data_dir>/map"', doc: 'Directory of the LMDB access map.', example: true },
  { key: 'store.map_size', default: '1073741824', doc: 'Maximum LMDB map size in bytes (1 GiB holds several million grants).' },
  { key: 'store.url', default: '"redis://:PASSWORD@10.0.0.5:6379/0"', doc: 'redis only, required: the Redis server (rediss:// for TLS); a non-loopback host needs a password. Cluster: a seed node; Sentinel: a sentinel, with the master\'s password and database.', example: true },
  { key: 'store.key_prefix', default: '"relaygate:"', doc: 'redis only: prefix of every key relaygate writes; in a cluster it must hold a hash tag, e.g. "{relaygate}:".' },
  { key: 'store.timeout', default: '"1s"', doc: 'redis only: deadline of every store operation; past it a lookup answers 451 4.3.0 (never a permit) and a source retries.' },
  { key: 'store.node_name', default: '"<host name>"', doc: 'redis only: names this node\'s saved log positions; every node sharing the Redis needs its own.', example: true },
  { key: 'store.cluster', default: 'false', doc: 'redis only: url (and nodes) are seed nodes of a Redis Cluster.' },
  { key: 'store.sentinel_master', default: '"mymaster"', doc: 'redis only: use Redis Sentinel; url (and nodes) are sentinels that name this master.', example: true },
  { key: 'store.nodes', default: '[]', doc: 'redis only: more cluster seed nodes or sentinels ("host:port" or redis:// URLs).' },
  { key: 'store.redis', default: '{ socket = { servername = "redis.example.net" } }', doc: 'redis only: options passed through to node-redis createClient / createCluster / createSentinel (merged over relaygate\'s own).', example: true },
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
  { key: "smtp.relayhost_pool", default: "20", doc: "Upstream connections kept open and reused: at least the number of messages in flight at once (fewer means connections opened and closed per message: the smtp benchmark measured 1.3-1.7x less throughput with 8 than with 24 for 20 busy clients)." },
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
  { key: 'export.table', default: '"lmdb:/var/lib/relaygate/pbs"', doc: 'Keep this Postfix table (type:name; lmdb, hash, btree or cdb; a bare path means lmdb) in step with the grants via postmap, for check_client_access in Postfix. Unset: no export.', example: true },
  { key: 'export.value', default: '"OK"', doc: 'Value written for each granted client IP: "OK", or "expiry" (the expiry as Unix seconds; Postfix treats an all-numerical value as OK).' },
  { key: 'export.postmap', default: '"/usr/sbin/postmap"', doc: 'The postmap binary; default: postmap on $PATH, else /usr/sbin/postmap. Missing or not executable: relaygate run refuses to start (RG_ERR_POSTMAP).', example: true },
  { key: 'export.config_directory', default: '"/etc/postfix"', doc: "Postfix config_directory passed to postmap -c (it reads main.cf there); default: postmap's own.", example: true },
  { key: 'policy.listen', default: '"127.0.0.1:10031"', doc: 'Postfix policy service (check_policy_service inet:127.0.0.1:10031): "ip:port" or "unix:/path"; setting it turns the service on. See README "Using relaygate with Postfix".', example: true },
  { key: 'policy.restrictions', default: '["permit_pop_before_smtp"]', doc: 'Run for each MAIL/RCPT request: a permit answers OK, a reject its code and text, the end of the list DUNNO (Postfix\'s own restrictions decide). Need not reject; a bare "permit" is refused.' },
  { key: 'policy.tempfail_action', default: '"DEFER_IF_PERMIT Service temporarily unavailable"', doc: 'The answer when a lookup fails (access map, table): DEFER_IF_PERMIT, DEFER or a 4xx code, with text; never OK.' },
  { key: 'policy.prepend_header', default: '"X-Relaygate-Trust"', doc: 'Header to add at DATA to messages whose RCPT this service answered OK, saying which restriction trusted the client (needs check_policy_service in smtpd_data_restrictions too). Unset: none.', example: true },
  { key: 'policy.clients', default: '["127.0.0.0/8", "[::1]/128"]', doc: 'TCP peers (your Postfix hosts) allowed to connect; the protocol has no authentication. A non-loopback listen address needs them listed.' },
  { key: 'policy.socket_mode', default: '"0666"', doc: 'File mode of a unix listen socket (put it in a directory only Postfix can reach, e.g. /var/spool/postfix/private/).' },
  { key: 'socketmap.listen', default: '"127.0.0.1:10032"', doc: 'Postfix socketmap server (socketmap:inet:127.0.0.1:10032:grant): "ip:port" or "unix:/path"; setting it turns it on.', example: true },
  { key: 'socketmap.grant_map', default: '"grant"', doc: 'Map name answering client IPs: OK <grant_action> while the IP holds a grant, NOTFOUND otherwise (and always for "unknown"), TEMP when the access map fails.' },
  { key: 'socketmap.grant_action', default: '"OK"', doc: 'The value for a granted IP: an access(5) action such as "OK", or "expiry" (the expiry in Unix seconds; all-numerical means OK to Postfix).' },
  { key: 'socketmap.sender_login_map', default: '"sender_login"', doc: 'Map name for smtpd_sender_login_maps: a sender address (or @domain) → its owners from sender_login_maps.' },
  { key: 'socketmap.clients', default: '["127.0.0.0/8", "[::1]/128"]', doc: 'TCP peers allowed to connect (no authentication in the protocol); a non-loopback listen address needs them listed.' },
  { key: 'socketmap.socket_mode', default: '"0666"', doc: 'File mode of a unix listen socket.' },
  { key: 'drac.listen_udp', default: '["127.0.0.1:0"]', doc: 'UDP addresses of the DRAC server (RPC program 900101, for DRAC clients such as qpopper or the Dovecot DRAC plugin); setting listen_udp or listen_tcp turns it on. Port 0: a free port, published through rpcbind as rpc.dracd does. Not loopback: needs allow or allow_file.', example: true },
  { key: 'drac.listen_tcp', default: '["127.0.0.1:0"]', doc: 'TCP addresses of the DRAC server (RPC record marking); port 0 as for listen_udp.', example: true },
  { key: 'drac.allow_file', default: '"/etc/mail/dracd.allow"', doc: 'Callers allowed to add grants, in dracd.allow format: "netmask netaddr" per line, mask first (or one CIDR block per line).', example: true },
  { key: 'drac.allow', default: '["192.0.2.0/28"]', doc: 'Callers (your POP/IMAP servers) allowed to add grants, as CIDR blocks; with allow_file, either may match. Neither set: loopback callers only.', example: true },
  { key: 'drac.rpcbind', default: '"auto"', doc: 'Register with the local portmapper (PMAP v2 SET, UNSET at stop): "auto" when one runs, true (a failure stops the start), false (never).' },
  { key: 'drac.rate_limit', default: '500', doc: 'Requests per second allowed from one caller IP (burst: one second); the excess is dropped and logged once a second.' },
  { key: 'whoson.listen', default: '["127.0.0.1:9876"]', doc: 'Addresses of the whoson server, each over TCP and UDP (9876 by convention); setting it turns the server on. Not loopback: needs allow_login and/or allow_query.', example: true },
  { key: 'whoson.allow_login', default: '["192.0.2.0/28"]', doc: 'Callers allowed LOGIN and LOGOUT (they create and delete grants), as CIDR blocks. Unset: loopback callers only.', example: true },
  { key: 'whoson.allow_query', default: '["192.0.2.25/32"]', doc: 'Callers allowed QUERY (e.g. an Exim host), as CIDR blocks. Unset: loopback callers only.', example: true },
  { key: 'whoson.rate_limit', default: '500', doc: 'Requests per second allowed from one caller IP (burst: one second); the excess is answered "*" over TCP, dropped over UDP, and logged once a second.' },
  { key: 'feed.listen', default: '"127.0.0.1:8473"', doc: 'Address and port of the signed HTTP feed (POST /v1/logins); setting it turns the feed on. Not loopback: needs tls_cert/tls_key or allow_plain_http.', example: true },
  { key: 'feed.tls_cert', default: '"/etc/relaygate/feed-cert.pem"', doc: 'PEM certificate for HTTPS on the feed (with tls_key); reloaded on SIGHUP.', example: true },
  { key: 'feed.tls_key', default: '"/etc/relaygate/feed-key.pem"', doc: 'PEM private key for HTTPS on the feed.', example: true },
  { key: 'feed.keys', default: '{ pop1 = "<secret>", pop2 = ["<new secret>", "<old secret>"] }', doc: 'Feeder id → shared secret (at least 32 bytes), or two secrets while rotating; grants carry source feed:<id>.', example: true },
  { key: 'feed.allow_plain_http', default: 'false', doc: 'Allow plain HTTP on a non-loopback listen address (only behind a trusted network or tunnel: HMAC protects integrity, not privacy).' },
  { key: 'feed.rate_limit', default: '100', doc: 'Requests per second accepted from one feeder (burst: one second); the excess gets 429 and is retried by the sender.' },
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
    else if (k === 'export') for (const sk of Object.keys(exportSchema.shape)) keys.push(`export.${sk}`);
    else if (k === 'policy') for (const sk of Object.keys(policySchema.shape)) keys.push(`policy.${sk}`);
    else if (k === 'socketmap') for (const sk of Object.keys(socketmapSchema.shape)) keys.push(`socketmap.${sk}`);
    else if (k === 'drac') for (const sk of Object.keys(dracSchema.shape)) keys.push(`drac.${sk}`);
    else if (k === 'whoson') for (const sk of Object.keys(whosonSchema.shape)) keys.push(`whoson.${sk}`);
    else if (k === 'feed') for (const sk of Object.keys(feedSchema.shape)) keys.push(`feed.${sk}`);
    else if (k === 'http') for (const sk of Object.keys(httpSchema.shape)) keys.push(`http.${sk}`);
    else if (v) keys.push(k);
  }
  return keys;
}
