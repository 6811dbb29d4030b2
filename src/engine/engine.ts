// createEngine(): compiles the restriction lists once (opening their tables) and returns decide(), which
// evaluates a list in order — the first restriction that does not answer DUNNO wins; running off the end
// permits, as in Postfix — and returns the verdict, the trace and one Postfix-shaped log line.
//
// Postfix state kept per request: warn_if_reject (the next reject only warns), defer_if_permit (a later
// permit becomes 450), DEFER_IF_REJECT from access tables (a later 5xx becomes 450).
// Security: trace details and log lines carry client- and store-supplied text (hostnames, addresses, grant
// users): all of it passes printable(), so neither a log nor `relaygate check` output can be forged.
// Fail closed, fail temporary. A lookup that fails (grant store, table) answers
// `451 4.3.0 <subject>: Temporary lookup failure`, an unexpected exception `451 4.3.0 Error: internal error`:
// never a permit and never a 5xx, and warn_if_reject cannot soften either. The configuration is validated
// as a whole when the engine is built: unknown names, bad arguments, tables that do not open, and a relay
// list that could never refuse anything (an open relay) are all reported at once (RG_ERR_RESTRICTION).

import { RelaygateError, isRelaygateError } from '../errors.ts';
import { decisionLine, type DecisionLineFields, type DecisionLineKind } from '../log/decision-line.ts';
import { printable } from '../log/format.ts';
import type { Grant } from '../store/types.ts';
import { openTable as registryOpenTable, type LookupTable } from '../tables/index.ts';
import { RequestContext, type EngineEnv } from './context.ts';
import { DomainList } from './domains.ts';
import { LookupFailure, replyString, safe, temporaryLookupFailure, type Outcome, type Reply } from './outcome.ts';
import type { RestrictionDef, StepFn } from './restriction.ts';
import { POSTFIX_ONLY, RESTRICTIONS, RESTRICTIONS_BY_NAME } from './restrictions/index.ts';
import type { Decision, DecisionRequest, Engine, EngineOptions, RelayMethod, Stage, TraceEntry, UsageSink } from './types.ts';
import { plainAddress, type SunsetPolicy } from './sunset.ts';
import { metrics } from '../metrics/metrics.ts';

interface Step {
  readonly name: string;
  /** canonical list entry: `name` or `name type:table` */
  readonly display: string;
  readonly run: StepFn;
  /** shared trace entry for the common no-detail DUNNO (saves an allocation per step per request) */
  readonly dunno: TraceEntry;
}

interface ParsedEntry {
  readonly index: number;
  readonly text: string;
  readonly def: RestrictionDef | undefined;
  readonly arg: string | undefined;
}

type ListName = 'relay_restrictions' | 'sender_restrictions';

/** Restrictions that make a relay list able to refuse (Postfix's smtpd_relay_restrictions check). */
const REFUSERS = RESTRICTIONS.filter((r) => r.refusesRelay).map((r) => r.name);

const INTERNAL_ERROR: Reply = Object.freeze({ code: 451, dsn: '4.3.0', text: 'Error: internal error' });

/** What a list evaluation ends with. */
interface Final {
  readonly action: 'permit' | 'reject' | 'defer';
  readonly reply: Reply | undefined;
  readonly by: string | null;
  /** for a permit: what the deciding restriction said (grant user, network, ...) */
  readonly detail: string | undefined;
  /** a lookup failure or internal error decided (Decision.failed) */
  readonly failed?: boolean;
}

export async function createEngine(opts: EngineOptions): Promise<Engine> {
  const problems: string[] = [];
  const mydestination = new DomainList('mydestination', opts.mydestination, false);
  const relayDomains = new DomainList('relay_domains', opts.relayDomains, true);
  problems.push(...mydestination.problems, ...relayDomains.problems);

  const lists: Record<ListName, ParsedEntry[]> = {
    relay_restrictions: parseList('relay_restrictions', opts.relayRestrictions, problems),
    sender_restrictions: parseList('sender_restrictions', opts.senderRestrictions, problems),
  };

  // Open every distinct table once, all at the same time; collect failures instead of stopping at the first.
  const specs = new Set<string>(opts.senderLoginMaps);
  for (const list of Object.values(lists)) for (const e of list) if (e.def?.takesTable && e.arg !== undefined) specs.add(e.arg);
  const open = opts.openTable ?? registryOpenTable;
  const tables = new Map<string, LookupTable>();
  const tableErrors = new Map<string, string>();
  await Promise.all(
    [...specs].map(async (spec) => {
      try {
        tables.set(spec, await open(spec));
      } catch (err) {
        tableErrors.set(spec, errorText(err));
      }
    }),
  );
  for (const [name, list] of Object.entries(lists)) {
    for (const e of list) {
      const err = e.arg === undefined ? undefined : tableErrors.get(e.arg);
      if (err !== undefined) problems.push(`${name}: entry ${e.index + 1} ${JSON.stringify(e.text)}: ${err}`);
    }
  }
  opts.senderLoginMaps.forEach((spec, i) => {
    const err = tableErrors.get(spec);
    if (err !== undefined) problems.push(`sender_login_maps: entry ${i + 1} ${JSON.stringify(spec)}: ${err}`);
  });

  const listEnd = opts.listEnd ?? 'permit';
  checkRelayCanRefuse(lists.relay_restrictions, problems, listEnd);
  if (opts.senderLoginMaps.length === 0) {
    for (const [name, list] of Object.entries(lists)) {
      for (const e of list) {
        if (e.def?.needsSenderLoginMaps) {
          problems.push(`${name}: entry ${e.index + 1} "${e.def.name}" needs sender_login_maps (tables mapping sender addresses to the logins that own them); without them it can never reject`);
        }
      }
    }
  }

  if (problems.length > 0) {
    await Promise.allSettled([...tables.values()].map((t) => t.close()));
    throw new RelaygateError('RG_ERR_RESTRICTION', `restriction configuration: ${problems.length} problem${problems.length === 1 ? '' : 's'}`, {
      details: problems,
    });
  }

  for (const t of tables.values()) for (const w of t.warnings ?? []) opts.logger.warn({ table: t.spec }, w);

  const env: EngineEnv = {
    mynetworks: opts.mynetworks,
    mydestination,
    relayDomains,
    senderLoginMaps: opts.senderLoginMaps.map((s) => tables.get(s)!),
    grants: opts.grants,
    logger: opts.logger,
    sunset: opts.sunset !== undefined && opts.sunset.size > 0 ? opts.sunset : undefined,
  };
  const usage = opts.usage;
  const compile = (list: ParsedEntry[]): Step[] =>
    list.map((e) => {
      const display = e.arg === undefined ? e.def!.name : `${e.def!.name} ${e.arg}`;
      return {
        name: e.def!.name,
        display,
        run: e.def!.compile({ env, table: e.arg === undefined ? undefined : tables.get(e.arg) }),
        dunno: Object.freeze({ restriction: display, result: 'DUNNO' as const }),
      };
    });
  const relaySteps = compile(lists.relay_restrictions);
  const senderSteps = compile(lists.sender_restrictions);
  let closed = false;

  /** evaluate() catches per restriction; this is a bug elsewhere (or a bad stage): still answer 4xx. */
  const internalError = (ctx: RequestContext, err: unknown): Final => {
    opts.logger.error({ err, client_ip: ctx.ip ?? null, stage: ctx.stage }, `engine: internal error: ${errorText(err)}`);
    return { action: 'defer', reply: INTERNAL_ERROR, by: null, detail: undefined, failed: true };
  };

  /** The decision for a list's Final: usage, metrics, the log lines. */
  const finish = (ctx: RequestContext, final: Final): Decision => {
    const stage = ctx.stage;
    // With listEnd 'dunno' the end of the list is no verdict: the caller says DUNNO and Postfix decides.
    const dunnoEnd = listEnd === 'dunno' && final.action === 'permit' && final.by === null;
    const decision = new EngineDecision(ctx, final, dunnoEnd, env.sunset);
    if (usage !== undefined && final.action === 'permit' && !dunnoEnd && stage === 'rcpt' && ctx.ip !== undefined) noteUsage(usage, ctx, final.by);
    metrics.countDecision(stage, final.by === null ? 'end_of_list' : firstWord(final.by), dunnoEnd ? 'dunno' : final.action);
    const logger = opts.logger;
    const level = dunnoEnd ? 'debug' : 'info';
    if (logger.isLevelEnabled(level)) {
      const clientIp = ctx.ip ?? printable(ctx.rawIp);
      if (ctx.sideLines !== undefined) {
        for (const s of ctx.sideLines) logger.info({ client_ip: clientIp, stage, action: s.kind, restriction: s.restriction }, decisionLine(s.kind, lineFields(ctx), s.what));
      }
      logger[level]({ client_ip: clientIp, stage, action: dunnoEnd ? 'dunno' : final.action, restriction: final.by, code: final.reply?.code ?? null, dsn: final.reply?.dsn ?? null }, decision.logLine);
    }
    return decision;
  };

  return {
    decide(req: DecisionRequest): Promise<Decision> {
      // Every front end's hot path: one promise per decision; the list runs synchronously when its
      // restrictions can answer at once (evaluate()).
      const ctx = new RequestContext(req, env, req.now ?? opts.clock());
      let r: Final | Promise<Final>;
      try {
        const steps = req.stage === 'rcpt' ? relaySteps : req.stage === 'mail' ? senderSteps : undefined;
        if (steps === undefined) throw new RelaygateError('RG_ERR_INTERNAL', `unknown stage ${JSON.stringify(req.stage)}`);
        r = evaluate(ctx, steps);
      } catch (err) {
        r = internalError(ctx, err);
      }
      if (r instanceof Promise) return r.then((f) => finish(ctx, f), (err: unknown) => finish(ctx, internalError(ctx, err)));
      try {
        return Promise.resolve(finish(ctx, r));
      } catch (err) {
        return Promise.reject(err);
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      await Promise.all([...tables.values()].map((t) => t.close()));
    },
    describe() {
      return { relay: relaySteps.map((s) => s.display), sender: senderSteps.map((s) => s.display) };
    },
  };
}

/** What apply() returns to go on with the next restriction without resetting warn_if_reject. */
const KEEP_WARN_IF_REJECT = 1;

/**
 * Runs one list for one request (Postfix generic_checks() plus the end-of-list rules). Synchronous while the
 * restrictions answer at once (LMDB lookups, networks, domains); from the first restriction that returns a
 * promise (a table or a Redis lookup) it goes on asynchronously.
 */
function evaluate(ctx: RequestContext, steps: readonly Step[]): Final | Promise<Final> {
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i]!;
    let out: Outcome | Promise<Outcome>;
    try {
      out = step.run(ctx);
    } catch (err) {
      out = failure(ctx, err);
    }
    if (out instanceof Promise) return evaluateAsync(ctx, steps, i, out);
    const f = apply(ctx, step, out);
    if (f === KEEP_WARN_IF_REJECT) continue;
    if (f !== undefined) return f;
    ctx.warnIfReject = false;
  }
  // Off the end of the list: permit (Postfix), unless defer_if_permit was armed.
  return permitOrDeferred(ctx, null, undefined);
}

/** evaluate() from step i on, whose outcome is the promise `first`. */
async function evaluateAsync(ctx: RequestContext, steps: readonly Step[], i: number, first: Promise<Outcome>): Promise<Final> {
  let pending: Outcome | Promise<Outcome> = first;
  for (;;) {
    let out: Outcome;
    try {
      out = pending instanceof Promise ? await pending : pending;
    } catch (err) {
      out = failure(ctx, err);
    }
    const f = apply(ctx, steps[i]!, out);
    if (f !== KEEP_WARN_IF_REJECT) {
      if (f !== undefined) return f;
      ctx.warnIfReject = false;
    }
    if (++i >= steps.length) break;
    try {
      pending = steps[i]!.run(ctx);
    } catch (err) {
      pending = failure(ctx, err);
    }
  }
  return permitOrDeferred(ctx, null, undefined);
}

/** One restriction's outcome: the list's Final, KEEP_WARN_IF_REJECT, or undefined to go on. */
function apply(ctx: RequestContext, step: Step, out: Outcome): Final | typeof KEEP_WARN_IF_REJECT | undefined {
  const trace = ctx.trace;
  switch (out.kind) {
    case 'dunno':
      trace.push(out.detail === undefined ? step.dunno : { restriction: step.display, result: 'DUNNO', detail: safe(out.detail) });
      return undefined;
    case 'warn_if_reject':
      trace.push({ restriction: step.display, result: 'DUNNO', detail: 'a reject by the next restriction only warns' });
      ctx.warnIfReject = true;
      return KEEP_WARN_IF_REJECT; // the flag must survive into the next restriction
    case 'warn':
      trace.push({ restriction: step.display, result: 'WARN', detail: safe(out.detail ?? out.text) });
      ctx.addSideLine({ kind: 'warn', what: out.text, restriction: step.display });
      return undefined;
    case 'ok':
      if (out.detail === undefined) {
        trace.push({ restriction: step.display, result: 'OK' });
        return permitOrDeferred(ctx, step.display, undefined);
      }
      const detail = safe(out.detail);
      trace.push({ restriction: step.display, result: 'OK', detail });
      return permitOrDeferred(ctx, step.display, detail);
    case 'reply': {
      const reply = replyString(out.reply);
      if (ctx.warnIfReject) {
        trace.push({ restriction: step.display, result: 'WARN', detail: `reject_warning: ${reply}` });
        ctx.addSideLine({ kind: 'reject_warning', what: reply, restriction: step.display });
        return undefined;
      }
      // After its sunset date a grant no longer counts: the relay denial tells the user what to change.
      if (ctx.sunset?.ended === true && step.name === 'reject_unauth_destination' && out.reply.code >= 500) {
        const sunsetReply = ctx.env.sunset!.reply(ctx.sunset.hit);
        trace.push({ restriction: step.display, result: 'REJECT', detail: `pop_before_smtp_sunset ${safe(ctx.sunset.hit.key)} ${ctx.sunset.hit.date}: ${replyString(sunsetReply)}` });
        if (ctx.deferIfReject !== undefined) return { action: 'defer', reply: ctx.deferIfReject.reply, by: step.display, detail: undefined };
        return { action: 'reject', reply: sunsetReply, by: step.display, detail: undefined };
      }
      const temporary = out.reply.code < 500;
      trace.push({ restriction: step.display, result: temporary ? 'DEFER' : 'REJECT', detail: out.detail === undefined ? reply : `${safe(out.detail)}: ${reply}` });
      if (!temporary && ctx.deferIfReject !== undefined) {
        return { action: 'defer', reply: ctx.deferIfReject.reply, by: step.display, detail: undefined };
      }
      return { action: temporary ? 'defer' : 'reject', reply: out.reply, by: step.display, detail: undefined };
    }
    case 'fail':
      trace.push({ restriction: step.display, result: 'DEFER', detail: safe(out.detail) });
      ctx.env.logger.warn({ client_ip: ctx.ip ?? null, stage: ctx.stage, restriction: step.display }, `${step.name}: ${safe(out.detail)}`);
      return { action: 'defer', reply: out.reply, by: step.display, detail: undefined, failed: true };
    case 'defer_if_permit':
    case 'defer_if_reject': {
      const reply = replyString(out.reply);
      if (ctx.warnIfReject) {
        trace.push({ restriction: step.display, result: 'WARN', detail: `reject_warning: ${reply}` });
        ctx.addSideLine({ kind: 'reject_warning', what: reply, restriction: step.display });
        return undefined;
      }
      const armed = { reply: out.reply, by: step.display };
      if (out.kind === 'defer_if_permit') ctx.deferIfPermit ??= armed;
      else ctx.deferIfReject ??= armed;
      trace.push({ restriction: step.display, result: 'DUNNO', detail: `${out.kind} armed: ${reply}` });
      return undefined;
    }
  }
  return undefined;
}

const METHOD_BY_RESTRICTION: ReadonlyMap<string, RelayMethod> = new Map([
  ['permit_sasl_authenticated', 'sasl'],
  ['permit_pop_before_smtp', 'pop'],
  ['permit_mynetworks', 'mynetworks'],
]);

/** Hands a permitted RCPT to the usage log when one of the three relay methods decided it. */
function noteUsage(usage: UsageSink, ctx: RequestContext, by: string | null): void {
  if (by === null) return;
  const method = METHOD_BY_RESTRICTION.get(by);
  if (method === undefined) return;
  const ip = ctx.ip!;
  let user: string;
  if (method === 'sasl') user = ctx.saslUser ?? `[${ip}]`;
  else {
    const login = method === 'pop' ? ctx.knownGrant?.user : undefined;
    const sender = plainAddress(ctx.sender());
    user = login ?? (sender ? `<${sender}>` : `[${ip}]`);
  }
  try {
    usage.note({ method, user, ip, at: ctx.now });
  } catch (err) {
    ctx.env.logger.warn({ event: 'usage_error', err }, `usage log: ${errorText(err)}`);
  }
}

function permitOrDeferred(ctx: RequestContext, by: string | null, detail: string | undefined): Final {
  const armed = ctx.deferIfPermit;
  if (armed !== undefined) return { action: 'defer', reply: armed.reply, by: armed.by, detail: undefined };
  return { action: 'permit', reply: undefined, by, detail };
}

function failure(ctx: RequestContext, err: unknown): Outcome {
  if (err instanceof LookupFailure) return { kind: 'fail', reply: temporaryLookupFailure(err.subject), detail: err.message };
  ctx.env.logger.error({ err, client_ip: ctx.ip ?? null, stage: ctx.stage }, `engine: unexpected error in a restriction: ${errorText(err)}`);
  return { kind: 'fail', reply: INTERNAL_ERROR, detail: `internal error: ${errorText(err)}` };
}

function lineFields(ctx: RequestContext): DecisionLineFields {
  const r = ctx.req;
  return {
    stage: ctx.stage,
    clientIp: ctx.ip ?? ctx.rawIp,
    clientName: ctx.clientName,
    // the parsed forms: `<bob@example.com>` from a sloppy front end is logged as `to=<bob@example.com>`
    sender: ctx.sender()?.raw,
    recipient: ctx.recipient()?.raw,
    protocol: r.protocol,
    helo: r.helo,
  };
}

const LIST_END: Record<Stage, string> = { rcpt: 'end of relay_restrictions', mail: 'end of sender_restrictions' };

/** The returned Decision; its log line is built at most once, and only when someone reads it. */
class EngineDecision implements Decision {
  readonly action: 'permit' | 'reject' | 'defer';
  readonly code: number | null;
  readonly dsn: string | null;
  readonly text: string | null;
  readonly decidedBy: string | null;
  readonly trace: readonly TraceEntry[];
  readonly grant?: Grant;
  readonly failed?: boolean;
  readonly headers?: readonly string[];
  readonly sunset?: { readonly key: string; readonly date: string; readonly state: 'notice' | 'ended' };
  #ctx: RequestContext;
  #detail: string | undefined;
  #dunnoEnd: boolean;
  #line: string | undefined = undefined;

  constructor(ctx: RequestContext, final: Final, dunnoEnd = false, sunset?: SunsetPolicy) {
    this.action = final.action;
    this.code = final.reply?.code ?? null;
    this.dsn = final.reply?.dsn ?? null;
    this.text = final.reply?.text ?? null;
    this.decidedBy = final.by;
    this.trace = ctx.trace;
    const g = ctx.knownGrant;
    if (g !== undefined) this.grant = g;
    if (final.failed === true) this.failed = true;
    const s = ctx.sunset;
    if (s !== undefined) {
      this.sunset = { key: s.hit.key, date: s.hit.date, state: s.ended ? 'ended' : 'notice' };
      const h = !s.ended && final.action === 'permit' ? sunset?.headerLine(s.hit) : undefined;
      if (h !== undefined) this.headers = [h];
    }
    this.#ctx = ctx;
    this.#detail = final.detail;
    this.#dunnoEnd = dunnoEnd;
  }

  get logLine(): string {
    if (this.#line === undefined) {
      let kind: DecisionLineKind;
      let what: string;
      if (this.#dunnoEnd) {
        kind = 'dunno';
        what = 'end of list';
      } else if (this.action === 'permit') {
        kind = 'permit';
        what = this.decidedBy === null ? LIST_END[this.#ctx.stage] : this.#detail === undefined ? this.decidedBy : `${this.decidedBy} ${this.#detail}`;
      } else {
        kind = 'reject';
        what = `${this.code} ${this.dsn} ${this.text}`;
      }
      this.#line = decisionLine(kind, lineFields(this.#ctx), what);
    }
    return this.#line;
  }

  toJSON(): Decision {
    const { action, code, dsn, text, decidedBy, trace, grant, logLine, headers, sunset } = this;
    return {
      action, code, dsn, text, decidedBy, trace,
      ...(grant === undefined ? {} : { grant }),
      logLine,
      ...(headers === undefined ? {} : { headers }),
      ...(sunset === undefined ? {} : { sunset }),
    };
  }
}

/** `check_client_access hash:/x` → `check_client_access` (the name alone is the metric label) */
function firstWord(s: string): string {
  const sp = s.indexOf(' ');
  return sp === -1 ? s : s.slice(0, sp);
}

function errorText(err: unknown): string {
  if (isRelaygateError(err)) return err.details.length > 0 ? `${err.message} (${err.details.join('; ')})` : err.message;
  return err instanceof Error ? err.message : String(err);
}

function parseList(list: ListName, entries: readonly string[], problems: string[]): ParsedEntry[] {
  const out: ParsedEntry[] = [];
  entries.forEach((raw, index) => {
    const where = `${list}: entry ${index + 1} ${JSON.stringify(raw)}`;
    const text = typeof raw === 'string' ? raw.trim() : '';
    if (text === '') {
      problems.push(`${list}: entry ${index + 1} is empty`);
      return;
    }
    const sp = text.search(/\s/);
    const name = (sp === -1 ? text : text.slice(0, sp)).toLowerCase();
    const arg = sp === -1 ? undefined : text.slice(sp).trim();
    const def = RESTRICTIONS_BY_NAME.get(name);
    if (def === undefined) {
      problems.push(`${where}: ${unknownName(name, list)}`);
      out.push({ index, text, def: undefined, arg: undefined });
      return;
    }
    if (def.takesTable && arg === undefined) {
      problems.push(`${where}: needs a table argument (type:name), e.g. "${def.name} texthash:/etc/relaygate/${def.name.replace(/^check_|_access$/g, '')}_access"`);
    } else if (!def.takesTable && arg !== undefined) {
      problems.push(`${where}: ${def.name} takes no argument${arg.includes(',') || name.endsWith(',') ? '; put each restriction in its own list element' : ''}`);
    } else if (def.takesTable && arg !== undefined && /\s/.test(arg) && !arg.toLowerCase().startsWith('inline:')) {
      problems.push(`${where}: ${def.name} takes one table argument; put each restriction in its own list element`);
    } else {
      out.push({ index, text, def, arg });
      return;
    }
    out.push({ index, text, def: undefined, arg: undefined });
  });
  return out;
}

function unknownName(name: string, list: ListName): string {
  if (name.includes(':')) {
    const check = list === 'sender_restrictions' ? 'check_sender_access' : 'check_client_access';
    return `a table alone is not a restriction; name the check, e.g. "${check} ${name}"`;
  }
  if (name.endsWith(',')) return 'unknown restriction; put each restriction in its own list element (no commas)';
  if (POSTFIX_ONLY.has(name)) return `${name} is a Postfix restriction relaygate does not implement; see README "Restrictions"`;
  let best: string | undefined;
  let bestDistance = 4;
  for (const r of RESTRICTIONS) {
    const d = editDistance(name, r.name);
    if (d < bestDistance) {
      best = r.name;
      bestDistance = d;
    }
  }
  if (best !== undefined) return `unknown restriction; did you mean "${best}"?`;
  return `unknown restriction (known: ${RESTRICTIONS.map((r) => r.name).join(', ')})`;
}

/**
 * Postfix refuses a relay list with no working reject; so does relaygate, and it also refuses one where an
 * unconditional `permit` runs before every reject, or whose only reject is muted by warn_if_reject:
 * each of those is an open relay.
 */
function checkRelayCanRefuse(list: readonly ParsedEntry[], problems: string[], listEnd: 'permit' | 'dunno'): void {
  if (listEnd === 'dunno') {
    // The caller's MTA decides after a DUNNO, so no reject is needed; a `permit` before any refusal would
    // answer OK to every request — an open relay through Postfix.
    const firstRefuser = list.findIndex((e) => e.def?.refusesRelay === true);
    const end = firstRefuser === -1 ? list.length : firstRefuser;
    const permitAll = list.findIndex((e, i) => i < end && e.def?.name === 'permit');
    if (permitAll !== -1) {
      problems.push(
        `relay_restrictions: entry ${permitAll + 1} "permit" answers OK to every request${firstRefuser === -1 ? '' : ` before "${list[firstRefuser]!.def!.name}" can refuse any`}, so Postfix would relay for anyone; remove it`,
      );
    }
    return;
  }
  let firstRefusal = -1;
  for (let i = 0; i < list.length; i++) {
    const e = list[i]!;
    if (!e.def?.refusesRelay) continue;
    if (i > 0 && list[i - 1]!.def?.name === 'warn_if_reject') continue;
    firstRefusal = i;
    break;
  }
  if (firstRefusal === -1) {
    problems.push(
      `relay_restrictions: nothing in the list can refuse relaying, so relaygate would be an open relay; add "reject_unauth_destination" at the end (any of ${REFUSERS.join(', ')} will do)`,
    );
    return;
  }
  const permitAll = list.findIndex((e, i) => i < firstRefusal && e.def?.name === 'permit');
  if (permitAll !== -1) {
    problems.push(
      `relay_restrictions: entry ${permitAll + 1} "permit" permits every request before "${list[firstRefusal]!.def!.name}" can refuse any, so relaygate would be an open relay; move it after the reject or remove it`,
    );
  }
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}
