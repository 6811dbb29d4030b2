// The SMTP AUTH gateway: one smtp-server per [[listen]] table, AUTH against the configured SASL backend,
// the relay decision by the engine at MAIL and RCPT, and every accepted message handed to the relayhost
// before the client gets its 250 (upstream.ts). A thin adapter: protocol → DecisionRequest → protocol.
//
// Roles (Postfix master.cf): `smtp` (port 25 style: STARTTLS offered, AUTH optional, relaying decided by
// relay_restrictions), `submission` (587: STARTTLS; MAIL needs SASL AUTH or a POP-before-SMTP grant) and
// `submissions` (465, RFC 8314: implicit TLS, same rule as submission). The submission rule is itself a
// restriction list run by a second, tiny engine (`permit_sasl_authenticated, permit_pop_before_smtp,
// reject` at MAIL), so even that decision is the engine's and shows in its trace; after it, MAIL runs
// sender_restrictions and RCPT relay_restrictions through the main engine, as on every role.
//
// smtp-server runs with `authOptional: true` (ARCHITECTURE.md): MAIL is never refused just for lack of AUTH,
// because POP-before-SMTP clients cannot authenticate; the engine decides at MAIL/RCPT. session.user is set
// only by a successful SASL AUTH — never for a grant — so AUTH stays available and the SASL user the engine
// sees is always a real login. STARTTLS clears it (smtp-server, RFC 3207 §4.2).
//
// Replies: the engine's code, enhanced status and text. Limits: message_size_limit (smtp-server `size` +
// `rejectOversized`: 552 5.3.4, and the upstream transaction is dropped mid-stream), recipient_limit
// (452 4.5.3), client_limit (over all listeners) and client_connection_limit per IP (421 4.7.0 at connect),
// idle_timeout. Logging: one Postfix-shaped line per connection (`connect from`, `disconnect from` with
// command counts), per AUTH (src/auth/log.ts, fail2ban-compatible), per decision (the engine's own line) and
// per forwarded message (`<id>: client=..., sasl_username=..., relay=..., status=sent (...)`).
//
// Security: every client IP goes through normalizeIp() once, at connect; a client name is used only when
// forward-confirmed (peername_lookup) — smtp-server's own reverse lookup is PTR-only, and an unverified
// name could match a hostname entry in an access table. The gateway never decides relaying itself; it
// refuses to start on an incomplete configuration (no relayhost, bad listen address), and any error inside
// a handler becomes a 4xx for that command, never an acceptance.

import dns from 'node:dns';
import { randomBytes } from 'node:crypto';
import type { ConnectionOptions } from 'node:tls';
import { domainToASCII } from 'node:url';
import type { SMTPServerAddress, SMTPServerAuthentication, SMTPServerAuthenticationResponse, SMTPServerDataStream, SMTPServerOptions, SMTPServerSession } from 'smtp-server';
import type { Config } from '../../config/index.ts';
import { createEngine, type Decision, type DecisionRequest, type Engine, type GrantLookup } from '../../engine/index.ts';
import { RelaygateError } from '../../errors.ts';
import { AuthThrottle, formatSaslFailure, formatSaslLockout, formatSaslSuccess, type Mechanism, type SaslBackend } from '../../auth/index.ts';
import type { Clock } from '../../clock.ts';
import type { Logger } from '../../log/logger.ts';
import { angle, clientLabel } from '../../log/format.ts';
import { CidrSet, normalizeIp } from '../../net/index.ts';
import type { Grant } from '../../store/types.ts';
import { GatewayServer, type ConnectionHooks, type GatewayConnection, type HookReply } from './connection.ts';
import { LineEndingGuard, receivedHeader } from './data.ts';
import { endpointText, gatewayConfigProblems, parseEndpoint } from './endpoints.ts';
import { loadTlsMaterial, type TlsMaterial } from './tls.ts';
import { listenError } from '../../net/listen-error.ts';
import { metrics } from '../../metrics/metrics.ts';
import { UpstreamPool, type ForwardResult } from './upstream.ts';

export type ListenRole = 'smtp' | 'submission' | 'submissions';

export interface GatewayOptions {
  readonly config: Config;
  readonly engine: Engine;
  /** the access map (or any GrantLookup): the submission rule's permit_pop_before_smtp asks it */
  readonly grants: GrantLookup;
  /** no backend: AUTH is not offered */
  readonly authBackend?: SaslBackend | undefined;
  /** default: one built from [auth] throttle_* */
  readonly throttle?: AuthThrottle | undefined;
  readonly logger: Logger;
  readonly clock: Clock;
  /** where a generated self-signed TLS pair lives (`<data_dir>/tls/`) */
  readonly dataDir: string;
  /**
   * tls_auth_only exempts loopback clients (default true). Tests, which only have loopback addresses, set
   * false to see what a remote client sees. Not a configuration key.
   */
  readonly loopbackIsLocal?: boolean | undefined;
  /** extra TLS client options for the relayhost connection (tests: the sink's CA). Not a configuration key. */
  readonly upstreamTls?: ConnectionOptions | undefined;
}

export interface ListenerAddress {
  readonly role: ListenRole;
  readonly address: string;
  readonly port: number;
}

export interface Gateway {
  /** the bound addresses, in [[listen]] order (port 0 in the config → the port the kernel chose) */
  addresses(): ListenerAddress[];
  /** stop accepting; let sessions finish for up to graceMs, then 421 the rest; close the upstream pool */
  stop(graceMs: number): Promise<void>;
  /** re-read the TLS key and certificate (SIGHUP); a broken pair is logged and the old one kept */
  reloadTls(): Promise<void>;
}

/** What the gateway knows about one client connection, keyed by smtp-server's session object. */
interface ConnState {
  readonly ip: string;
  readonly port: number;
  /** forward-confirmed reverse name, or undefined (`unknown` in logs) */
  readonly name: string | undefined;
  /** `name[addr]` for logs */
  readonly label: string;
  readonly role: ListenRole;
  readonly loopback: boolean;
  counted: boolean;
  /** the grant the engine found for this client (last decision that looked), for the message log */
  grant: Grant | undefined;
  /** header lines the engine asked for in this transaction's RCPT decisions (the sunset notice) */
  notices: string[] | undefined;
}

/** What smtp-server keeps in session.user after a successful SASL AUTH (never for a grant). */
interface SaslIdentity {
  readonly name: string;
  readonly method: Mechanism;
}

const LOOPBACK = new CidrSet(['127.0.0.0/8', '::1/128']);

/** An SMTP error reply for smtp-server: responseCode plus the enhanced code at the start of the text. */
function smtpError(code: number, dsn: string, text: string): Error & { responseCode: number } {
  const err = new Error(`${dsn} ${text}`) as Error & { responseCode: number };
  err.responseCode = code;
  return err;
}

function saslIdentity(session: SMTPServerSession): SaslIdentity | undefined {
  const u: unknown = session.user;
  if (typeof u === 'object' && u !== null && typeof (u as SaslIdentity).name === 'string') return u as SaslIdentity;
  return undefined;
}

/**
 * smtp-server rewrites an `xn--` domain in MAIL/RCPT to Unicode; the engine (whose domain lists are the
 * operator's ASCII spelling) and an upstream without SMTPUTF8 need the A-label form the client sent.
 */
export function aLabelAddress(address: string): string {
  const at = address.lastIndexOf('@');
  if (at === -1) return address;
  const domain = address.slice(at + 1);
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(domain) || domain.startsWith('[')) return address;
  const ascii = domainToASCII(domain);
  return ascii === '' ? address : `${address.slice(0, at + 1)}${ascii}`;
}

/** Postfix-like queue id: 10 upper-case hex digits. */
function newQueueId(): string {
  return randomBytes(5).toString('hex').toUpperCase();
}

export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const { config, engine, logger, clock } = opts;
  const smtp = config.smtp;
  const problems = gatewayConfigProblems(config);
  if (problems.length > 0) throw new RelaygateError('RG_ERR_CONFIG_INVALID', `SMTP gateway configuration: ${problems.length} problem(s)`, { details: problems });
  const relayhost = parseEndpoint(smtp.relayhost!, { defaultPort: 25 });
  if (typeof relayhost === 'string') throw new RelaygateError('RG_ERR_CONFIG_INVALID', `smtp.relayhost: ${relayhost}`);

  // First what can fail without leaving anything open: the TLS pair (read or generated).
  let tlsMaterial: TlsMaterial = await loadTlsMaterial({ tlsKey: smtp.tls_key, tlsCert: smtp.tls_cert, dataDir: opts.dataDir, hostname: smtp.hostname }, logger);

  const backend = opts.authBackend;
  const throttle =
    opts.throttle ??
    new AuthThrottle(clock, {
      maxFailures: config.auth.throttle_failures,
      window: config.auth.throttle_window * 1000,
      lockout: config.auth.throttle_lockout * 1000,
    });
  const throttleSweep = setInterval(() => throttle.sweep(), 60_000);
  throttleSweep.unref();
  const authMethods = config.auth.mechanisms.filter((m) => m !== 'CRAM-MD5' || backend?.supportsCramMd5 === true);
  if (backend !== undefined && config.auth.mechanisms.includes('CRAM-MD5') && !backend.supportsCramMd5) {
    logger.warn({ event: 'smtp_cram_md5_off', backend: backend.name }, `smtp: CRAM-MD5 is not offered: the ${backend.name} backend holds no cleartext passwords`);
  }
  const loopbackIsLocal = opts.loopbackIsLocal ?? true;

  // The submission rule as a restriction list (see the header). Its permits are not logged (the main
  // engine logs the MAIL decision that follows); its refusals are, by the adapter, with the engine's line.
  const submissionGate = await createEngine({
    relayRestrictions: ['reject'],
    senderRestrictions: ['permit_sasl_authenticated', 'permit_pop_before_smtp', 'reject'],
    mynetworks: new CidrSet([]),
    mydestination: [],
    relayDomains: [],
    senderLoginMaps: [],
    grants: opts.grants,
    clock,
    logger: logger.child({ component: 'submission_gate' }, { level: 'warn' }),
  });

  const pool = new UpstreamPool({
    host: relayhost.host,
    port: relayhost.port,
    tls: smtp.relayhost_tls,
    auth: smtp.relayhost_auth,
    timeoutMs: smtp.relayhost_timeout * 1000,
    poolSize: smtp.relayhost_pool,
    ehloName: smtp.hostname,
    xforward: smtp.xforward,
    logger,
    tlsOptions: opts.upstreamTls,
  });
  if (smtp.relayhost_auth !== undefined && smtp.relayhost_tls === 'none' && !LOOPBACK.contains(relayhost.host)) {
    logger.warn({ event: 'smtp_relayhost_plaintext_auth' }, `smtp: relayhost_auth is sent to ${endpointText(relayhost)} without TLS; set relayhost_tls = "starttls" or "tls"`);
  }

  const states = new WeakMap<SMTPServerSession, ConnState>();
  const connections = new WeakMap<SMTPServerSession, GatewayConnection>();
  const perIp = new Map<string, number>();
  let total = 0;
  const servers: Array<{ server: GatewayServer; role: ListenRole; host: string }> = [];

  const resolver = smtp.peername_lookup ? { reverse: confirmedReverse } : undefined;

  // ---- hooks into smtp-server (connection.ts) ----
  const hooks: ConnectionHooks = {
    greetingDelayMs: smtp.greeting_delay * 1000,
    ehloFeatures(conn, features) {
      const st = states.get(conn.session);
      const offer = st !== undefined && authOffered(st, conn.session.secure);
      const out: string[] = [];
      for (const f of features) {
        if (/^AUTH\b/i.test(f)) {
          if (!offer) continue;
          out.push(f);
          // Postfix broken_sasl_auth_clients: the pre-RFC 2554 form Outlook Express 4 / Exchange 5 read.
          if (smtp.broken_sasl_auth_clients) out.push(`AUTH=${f.slice(5)}`);
          continue;
        }
        out.push(f);
      }
      return out;
    },
    authGate(conn): HookReply | undefined {
      const st = states.get(conn.session);
      if (st === undefined || backend === undefined) return { code: 503, text: '5.5.1 Error: authentication not enabled' };
      if (!authOffered(st, conn.session.secure)) return { code: 538, text: '5.7.11 Encryption required for requested authentication mechanism' };
      if (conn.session.envelope.mailFrom) return { code: 503, text: '5.5.1 Error: MAIL transaction in progress' };
      if (throttle.check(st.ip).action === 'block') {
        const r = lockoutReply(st);
        return { code: r.responseCode, text: r.message };
      }
      return undefined;
    },
    created(conn) {
      connections.set(conn.session, conn);
    },
  };

  /** tls_auth_only: AUTH only over TLS, except for loopback clients (see loopbackIsLocal). */
  function authOffered(st: ConnState, secure: boolean): boolean {
    if (backend === undefined || authMethods.length === 0) return false;
    if (!smtp.tls_auth_only || secure) return true;
    return loopbackIsLocal && st.loopback;
  }

  /** 421 4.7.0 (smtp-server closes the connection after any 421). */
  function lockoutReply(st: ConnState): Error & { responseCode: number } {
    return smtpError(421, '4.7.0', `${smtp.hostname} Error: too many failed authentications from ${st.ip}, try again later`);
  }

  function request(st: ConnState, session: SMTPServerSession, extra: Pick<DecisionRequest, 'stage' | 'sender' | 'recipient'>): DecisionRequest {
    const id = saslIdentity(session);
    return {
      ...extra,
      clientIp: st.ip,
      clientName: st.name,
      helo: session.hostNameAppearsAs || undefined,
      protocol: session.openingCommand === 'EHLO' ? 'ESMTP' : 'SMTP',
      saslUser: id?.name,
      saslMethod: id?.method,
    };
  }

  function refusal(d: Decision): Error {
    return smtpError(d.code ?? 451, d.dsn ?? '4.3.0', d.text ?? 'Error: internal error');
  }

  async function decide(req: DecisionRequest, gate: Engine = engine): Promise<Decision | Error> {
    try {
      return await gate.decide(req);
    } catch (err) {
      logger.error({ event: 'smtp_decide_error', err }, `smtp: decision failed: ${(err as Error).message}`);
      return smtpError(451, '4.3.0', 'Error: internal error');
    }
  }

  // ---- smtp-server handlers ----
  function onConnect(role: ListenRole) {
    return (session: SMTPServerSession, callback: (err?: Error | null) => void): void => {
      const ip = normalizeIp(session.remoteAddress);
      if (ip === undefined) {
        logger.warn({ event: 'smtp_bad_address', raw: String(session.remoteAddress) }, `smtp: refusing a connection with an unusable client address`);
        callback(smtpError(421, '4.3.0', `${smtp.hostname} Error: cannot determine the client address`));
        return;
      }
      const host = typeof session.clientHostname === 'string' && session.clientHostname !== '' && !session.clientHostname.startsWith('[') ? session.clientHostname : undefined;
      const st: ConnState = { ip, port: session.remotePort, name: host, label: clientLabel(ip, host), role, loopback: LOOPBACK.contains(ip), counted: false, grant: undefined, notices: undefined };
      states.set(session, st);
      logger.info({ event: 'smtp_connect', client_ip: ip, client_port: st.port, role }, `connect from ${st.label}`);
      if (total >= smtp.client_limit) {
        logger.warn({ event: 'smtp_client_limit', client_ip: ip, limit: smtp.client_limit }, `warning: client limit ${smtp.client_limit} reached, refusing ${st.label}`);
        callback(smtpError(421, '4.7.0', `${smtp.hostname} Error: too many connected clients, try again later`));
        return;
      }
      const n = perIp.get(ip) ?? 0;
      if (n >= smtp.client_connection_limit) {
        // Postfix anvil: "warning: Connection concurrency limit exceeded: 51 from host[addr] for service smtp"
        logger.warn({ event: 'smtp_connection_limit', client_ip: ip, limit: smtp.client_connection_limit }, `warning: Connection concurrency limit exceeded: ${n + 1} from ${st.label} for service ${role}`);
        callback(smtpError(421, '4.7.0', `${smtp.hostname} Error: too many connections from ${ip}`));
        return;
      }
      perIp.set(ip, n + 1);
      total++;
      st.counted = true;
      callback();
    };
  }

  function onSecure(_socket: unknown, session: SMTPServerSession, callback: (err?: Error | null) => void): void {
    const st = states.get(session);
    const t = session.tlsOptions;
    if (st !== undefined && t) {
      logger.info({ event: 'smtp_tls', client_ip: st.ip, tls_version: t.version, cipher: t.name }, `Anonymous TLS connection established from ${st.label}: ${t.version} with cipher ${t.name}`);
    }
    callback();
  }

  function onClose(session: SMTPServerSession): void {
    const st = states.get(session);
    if (st === undefined) return;
    if (st.counted) {
      st.counted = false;
      total--;
      const n = (perIp.get(st.ip) ?? 1) - 1;
      if (n <= 0) perIp.delete(st.ip);
      else perIp.set(st.ip, n);
    }
    const conn = connections.get(session);
    const stats = conn === undefined ? '' : ` ${conn.statsText()}`;
    logger.info({ event: 'smtp_disconnect', client_ip: st.ip }, `disconnect from ${st.label}${stats}`);
  }

  function onAuth(auth: SMTPServerAuthentication, session: SMTPServerSession, callback: (err: Error | null | undefined, response?: SMTPServerAuthenticationResponse) => void): void {
    void handleAuth(auth, session).then(
      (r) => (r instanceof Error ? callback(r) : callback(null, r)),
      (err: unknown) => {
        logger.error({ event: 'smtp_auth_error', err }, `smtp: AUTH handler failed: ${(err as Error).message}`);
        callback(smtpError(454, '4.7.0', 'Temporary authentication failure'));
      },
    );
  }

  async function handleAuth(auth: SMTPServerAuthentication, session: SMTPServerSession): Promise<SMTPServerAuthenticationResponse | Error> {
    const st = states.get(session);
    if (st === undefined || backend === undefined) return smtpError(503, '5.5.1', 'Error: authentication not enabled');
    const method = auth.method;
    if (method !== 'PLAIN' && method !== 'LOGIN' && method !== 'CRAM-MD5') return smtpError(504, '5.5.4', 'Error: Unrecognized authentication type');
    const mechanism: Mechanism = method;
    const username = auth.username ?? '';
    const client = { ip: st.ip, ...(st.name !== undefined ? { name: st.name } : {}) };
    if (throttle.check(st.ip, username).action === 'block') return lockoutReply(st);

    let problem: string | undefined;
    if (mechanism === 'PLAIN') {
      // RFC 4616: authcid must be present; an authzid other than the authcid would be a proxy login, which
      // relaygate never grants (smtp-server would otherwise log in `user\0\0pass` as `user`).
      const authcid = auth.authcid ?? '';
      const authzid = auth.authzid ?? '';
      if (authcid === '') problem = 'empty authentication identity';
      else if (authzid !== '' && authzid !== authcid) problem = 'authorization identity differs from authentication identity';
    }
    if (username === '') problem ??= 'empty username';

    let result: { outcome: 'ok'; user: string } | { outcome: 'fail' | 'tempfail'; reason: string };
    if (problem !== undefined) {
      result = { outcome: 'fail', reason: problem };
    } else {
      try {
        result = await backend.authenticate({
          mechanism,
          username,
          ...(mechanism === 'CRAM-MD5' ? { challenge: auth.challenge ?? '', digest: auth.challengeResponse ?? '' } : { password: auth.password ?? '' }),
          clientIp: st.ip,
          localIp: normalizeIp(session.localAddress) ?? session.localAddress,
          secured: session.secure || st.loopback,
        });
      } catch (err) {
        // authenticate() never throws by contract; if it does, it is the backend's outage, not a login.
        result = { outcome: 'tempfail', reason: (err as Error).message };
      }
    }

    metrics.auth.inc({ backend: backend?.name ?? 'none', mechanism, result: result.outcome === 'ok' ? 'success' : result.outcome === 'tempfail' ? 'tempfail' : 'failure' });
    if (result.outcome === 'ok') {
      throttle.succeed(st.ip, username);
      logger.info({ event: 'sasl_login', client_ip: st.ip, sasl_method: mechanism, sasl_username: result.user }, formatSaslSuccess({ client, mechanism, username: result.user }));
      const identity: SaslIdentity = { name: result.user, method: mechanism };
      return { user: identity };
    }
    logger.warn(
      { event: result.outcome === 'tempfail' ? 'sasl_tempfail' : 'sasl_failure', client_ip: st.ip, sasl_method: mechanism, reason: result.reason },
      formatSaslFailure({ client, mechanism, outcome: result.outcome, username }),
    );
    if (result.outcome === 'tempfail') return smtpError(454, '4.7.0', 'Temporary authentication failure');
    const verdict = throttle.fail(st.ip, username);
    if (verdict.action === 'block') {
      metrics.auth.inc({ backend: backend?.name ?? 'none', mechanism, result: 'lockout' });
      logger.warn({ event: 'sasl_lockout', client_ip: st.ip, until: verdict.until }, formatSaslLockout({ client, failures: throttle.options.maxFailures, service: config.auth.service }));
      return lockoutReply(st);
    }
    if (verdict.action === 'delay') await new Promise((r) => setTimeout(r, verdict.ms).unref());
    return smtpError(535, '5.7.8', 'Error: authentication failed');
  }

  function onMailFrom(address: SMTPServerAddress, session: SMTPServerSession, callback: (err?: Error | null) => void): void {
    void (async () => {
      const st = states.get(session);
      if (st === undefined) return smtpError(421, '4.3.0', 'Error: internal error');
      const sender = aLabelAddress(address.address);
      st.notices = undefined; // a new transaction
      if (st.role !== 'smtp' && saslIdentity(session) === undefined) {
        const gate = await decide(request(st, session, { stage: 'mail', sender }), submissionGate);
        if (gate instanceof Error) return gate;
        if (gate.action !== 'permit') {
          logger.info({ event: 'smtp_submission_refused', client_ip: st.ip, role: st.role, code: gate.code, dsn: gate.dsn }, gate.logLine);
          return refusal(gate);
        }
      }
      const d = await decide(request(st, session, { stage: 'mail', sender }));
      if (d instanceof Error) return d;
      if (d.grant !== undefined) st.grant = d.grant;
      return d.action === 'permit' ? undefined : refusal(d);
    })().then(
      (err) => callback(err ?? null),
      (err: unknown) => {
        logger.error({ event: 'smtp_mail_error', err }, `smtp: MAIL handler failed: ${(err as Error).message}`);
        callback(smtpError(451, '4.3.0', 'Error: internal error'));
      },
    );
  }

  function onRcptTo(address: SMTPServerAddress, session: SMTPServerSession, callback: (err?: Error | null) => void): void {
    void (async () => {
      const st = states.get(session);
      if (st === undefined) return smtpError(421, '4.3.0', 'Error: internal error');
      const mailFrom = session.envelope.mailFrom;
      const d = await decide(request(st, session, { stage: 'rcpt', sender: mailFrom ? aLabelAddress(mailFrom.address) : '', recipient: aLabelAddress(address.address) }));
      if (d instanceof Error) return d;
      if (d.grant !== undefined) st.grant = d.grant;
      if (d.action === 'permit' && d.headers !== undefined) {
        const have = (st.notices ??= []);
        for (const h of d.headers) if (!have.includes(h)) have.push(h);
      }
      return d.action === 'permit' ? undefined : refusal(d);
    })().then(
      (err) => callback(err ?? null),
      (err: unknown) => {
        logger.error({ event: 'smtp_rcpt_error', err }, `smtp: RCPT handler failed: ${(err as Error).message}`);
        callback(smtpError(451, '4.3.0', 'Error: internal error'));
      },
    );
  }

  function onData(stream: SMTPServerDataStream, session: SMTPServerSession, callback: (err?: Error | null, message?: string) => void): void {
    const st = states.get(session);
    const mailFrom = session.envelope.mailFrom;
    if (st === undefined || !mailFrom) {
      stream.resume();
      callback(smtpError(451, '4.3.0', 'Error: internal error'));
      return;
    }
    const started = clock();
    const queueId = newQueueId();
    const id = saslIdentity(session);
    // The client's own spelling goes upstream: A-labels unless it asked for SMTPUTF8 (see aLabelAddress).
    const spell = (a: string) => (session.envelope.smtpUtf8 ? a : aLabelAddress(a));
    const sender = spell(mailFrom.address);
    const recipients = session.envelope.rcptTo.map((r) => spell(r.address));
    const tlsInfo = session.tlsOptions ? { version: session.tlsOptions.version, cipher: session.tlsOptions.name } : undefined;
    const header = receivedHeader({
      helo: session.hostNameAppearsAs || undefined,
      clientName: st.name,
      clientIp: st.ip,
      by: smtp.hostname,
      with: session.transmissionType,
      id: queueId,
      authenticatedSender: smtp.authenticated_header && id !== undefined ? id.name : undefined,
      tls: tlsInfo,
      singleRecipient: recipients.length === 1 ? recipients[0] : undefined,
      date: new Date(clock()),
    });
    const job = pool.start({
      from: sender,
      to: recipients,
      use8BitMime: session.envelope.bodyType === '8bitmime',
      xforward: { name: st.name, addr: st.ip, port: st.port, proto: session.openingCommand === 'EHLO' ? 'ESMTP' : 'SMTP', helo: session.hostNameAppearsAs || undefined },
    });
    const guard = new LineEndingGuard(smtp.bare_newline);
    // Why the message is refused locally (size, line endings), decided while it streams in.
    let local: Error | undefined;
    let bytes = 0;
    let upstreamFailed = false;
    const drain = () => {
      // Discard the rest of the client's message: the reply is decided, smtp-server still needs the end.
      stream.removeListener('data', onChunk);
      stream.resume();
    };
    void job.result.then((r) => {
      if (!r.ok) {
        upstreamFailed = true;
        drain();
      }
    });
    const onChunk = (chunk: Buffer): void => {
      if (local !== undefined || upstreamFailed) return;
      bytes += chunk.length;
      if (stream.sizeExceeded) {
        // smtp-server answers 552 5.3.4 itself (rejectOversized); the upstream must never see the end.
        local = smtpError(552, '5.3.4', 'Error: message exceeds fixed maximum message size');
        job.abort('message size limit exceeded');
        drain();
        return;
      }
      const out = guard.push(chunk);
      if (guard.violation !== undefined) {
        local = smtpError(550, '5.5.2', `Error: ${guard.violation} received in message data; lines must end with CRLF`);
        job.abort(guard.violation);
        drain();
        return;
      }
      if (out.length > 0 && !job.body.write(out)) {
        stream.pause();
        job.body.once('drain', () => stream.resume());
      }
    };
    job.body.on('error', () => undefined);
    job.body.write(header);
    if (st.notices !== undefined) job.body.write(st.notices.map((h) => `${h}\r\n`).join(''));
    stream.on('data', onChunk);
    stream.once('error', () => {
      // The client went away before the end of data: the upstream must never see the end of it either.
      job.abort('client connection lost during DATA');
      metrics.upstream.inc({ result: 'aborted' });
      logger.info({ event: 'smtp_message', queue_id: queueId, client_ip: st.ip, status: 'aborted', size: bytes }, `${queueId}: client=${st.label}, status=aborted (lost connection after DATA, ${bytes} bytes received)`);
    });
    stream.once('end', () => {
      if (local === undefined && !upstreamFailed && !stream.sizeExceeded) {
        const tail = guard.end();
        if (guard.violation !== undefined) {
          local = smtpError(550, '5.5.2', `Error: ${guard.violation} received in message data; lines must end with CRLF`);
          job.abort(guard.violation);
        } else {
          job.body.end(tail);
        }
      } else if (local === undefined && stream.sizeExceeded) {
        local = smtpError(552, '5.3.4', 'Error: message exceeds fixed maximum message size');
        job.abort('message size limit exceeded');
      }
      void job.result.then((r) => finish(r));
    });

    const finish = (r: ForwardResult): void => {
      const seconds = (clock() - started) / 1000;
      const delay = seconds.toFixed(2);
      const outcome = local !== undefined ? 'rejected' : r.ok ? 'sent' : r.code >= 500 ? 'bounced' : 'deferred';
      metrics.upstream.inc({ result: outcome });
      if (local === undefined) metrics.upstreamSeconds.observe({ result: outcome }, seconds);
      const who = [
        `client=${st.label}`,
        ...(id !== undefined ? [`sasl_method=${id.method}`, `sasl_username=${printableUser(id.name)}`] : []),
        ...(st.grant !== undefined && id === undefined ? [`grant_source=${printableUser(st.grant.source)}`, `grant_user=${printableUser(st.grant.user ?? '-')}`] : []),
        `from=${angle(sender)}`,
        `nrcpt=${recipients.length}`,
        `size=${bytes}`,
        `relay=${r.relay}`,
        `delay=${delay}`,
      ].join(', ');
      const fields = { event: 'smtp_message', queue_id: queueId, client_ip: st.ip, sasl_username: id?.name ?? null, grant_source: st.grant?.source ?? null, nrcpt: recipients.length, size: bytes };
      if (local !== undefined) {
        logger.info({ ...fields, status: 'rejected' }, `${queueId}: ${who}, status=rejected (${(local as Error & { responseCode: number }).responseCode} ${local.message})`);
        callback(local);
        return;
      }
      if (r.ok) {
        logger.info({ ...fields, status: 'sent', upstream_queue_id: r.queueId ?? null }, `${queueId}: ${who}, status=sent (${r.reply})`);
        callback(null, r.queueId !== undefined ? `2.0.0 Ok: queued as ${r.queueId}` : `2.0.0 Ok: accepted by ${smtp.hostname} upstream`);
        return;
      }
      const status = r.code >= 500 ? 'bounced' : 'deferred';
      logger.info({ ...fields, status, detail: r.detail }, `${queueId}: ${who}, status=${status} (${r.code} ${r.dsn} ${r.text}; ${r.detail})`);
      callback(smtpError(r.code, r.dsn, r.text));
    };
  }

  // ---- listeners ----
  const baseOptions = (role: ListenRole): SMTPServerOptions => ({
    name: smtp.hostname,
    heloResponse: '%s',
    key: tlsMaterial.key,
    cert: tlsMaterial.cert,
    secure: role === 'submissions',
    // tls_auth_only is enforced per session by the hooks (with its loopback exception), so smtp-server's own
    // all-or-nothing "538 before STARTTLS" must stay out of the way.
    allowInsecureAuth: true,
    authOptional: true,
    authMethods: [...authMethods],
    // XCLIENT/XFORWARD are never accepted from clients (they would let a client claim another address);
    // the sendmail novelty commands only produce noise.
    disabledCommands: ['XCLIENT', 'XFORWARD', 'WIZ', 'SHELL', 'KILL'],
    useXClient: false,
    useXForward: false,
    hideENHANCEDSTATUSCODES: false,
    hideDSN: true,
    hideREQUIRETLS: true,
    size: smtp.message_size_limit,
    rejectOversized: true,
    maxRecipients: smtp.recipient_limit,
    maxClients: smtp.client_limit,
    socketTimeout: smtp.idle_timeout * 1000,
    disableReverseLookup: !smtp.peername_lookup,
    ...(resolver !== undefined ? { resolver } : {}),
    logger: false,
    onConnect: onConnect(role),
    onSecure,
    onAuth,
    onMailFrom,
    onRcptTo,
    onData,
    onClose,
  });

  try {
    for (const l of config.listen) {
      const ep = parseEndpoint(l.address, { allowPortZero: true });
      if (typeof ep === 'string') throw new RelaygateError('RG_ERR_CONFIG_INVALID', `listen address ${l.address}: ${ep}`);
      const server = new GatewayServer(baseOptions(l.role), hooks);
      server.on('error', (err: Error) => logger.warn({ event: 'smtp_error', role: l.role, err: err.message }, `smtp: ${l.role} listener: ${err.message}`));
      await new Promise<void>((resolve, reject) => {
        const onErr = (err: NodeJS.ErrnoException) => reject(listenError('smtp', l.address, err));
        server.server.once('error', onErr);
        server.listen(ep.port, ep.host, () => {
          server.server.off('error', onErr);
          resolve();
        });
      });
      servers.push({ server, role: l.role, host: ep.host });
    }
  } catch (err) {
    await Promise.allSettled(servers.map((s) => new Promise<void>((r) => s.server.server.close(() => r()))));
    clearInterval(throttleSweep);
    await submissionGate.close();
    await pool.close();
    throw err;
  }

  const addresses = (): ListenerAddress[] =>
    servers.map((s) => {
      const a = s.server.server.address();
      return { role: s.role, address: typeof a === 'object' && a !== null ? a.address : s.host, port: typeof a === 'object' && a !== null ? a.port : 0 };
    });
  logger.info(
    { event: 'smtp_listening', listeners: addresses(), relayhost: endpointText(relayhost), auth: backend?.name ?? null, mechanisms: authMethods },
    `smtp gateway listening on ${addresses().map((a) => `${endpointText({ host: a.address, port: a.port })} (${a.role})`).join(', ')}; relayhost ${endpointText(relayhost)}; AUTH ${backend === undefined ? 'off' : `${backend.name} ${authMethods.join(' ')}`}`,
  );

  let stopped = false;
  return {
    addresses,
    async reloadTls() {
      try {
        const next = await loadTlsMaterial({ tlsKey: smtp.tls_key, tlsCert: smtp.tls_cert, dataDir: opts.dataDir, hostname: smtp.hostname }, logger);
        for (const s of servers) s.server.updateSecureContext({ key: next.key, cert: next.cert });
        tlsMaterial = next;
        logger.info({ event: 'smtp_tls_reloaded', cert_file: next.certPath }, `smtp: TLS certificate reloaded from ${next.certPath}`);
      } catch (err) {
        logger.error({ event: 'smtp_tls_reload_failed', err: (err as Error).message }, `smtp: TLS reload failed, keeping the current certificate: ${(err as Error).message}`);
      }
    },
    async stop(graceMs: number) {
      if (stopped) return;
      stopped = true;
      await Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((resolve) => {
              s.server.options.closeTimeout = Math.max(1, graceMs);
              s.server.close(() => resolve());
            }),
        ),
      );
      clearInterval(throttleSweep);
      await pool.close();
      await submissionGate.close();
      logger.info({ event: 'smtp_stopped' }, 'smtp gateway stopped');
    },
  };
}

function printableUser(s: string): string {
  return s.replace(/[^\x21-\x7e]/g, '?').slice(0, 256);
}

/**
 * peername_lookup: a reverse name counts only when it resolves back to the client address (Postfix's
 * "verified" client name); otherwise the client is `unknown`. smtp-server bounds the whole lookup (1.5 s).
 */
function confirmedReverse(ip: string, callback: (err: Error | null, hostnames?: string[]) => void): void {
  dns.reverse(ip, (err, names) => {
    if (err || names.length === 0) return callback(null, []);
    const name = names[0]!;
    dns.lookup(name, { all: true }, (lerr, addrs) => {
      if (lerr) return callback(null, []);
      const want = normalizeIp(ip);
      callback(null, addrs.some((a) => normalizeIp(a.address) === want) ? [name] : []);
    });
  });
}
