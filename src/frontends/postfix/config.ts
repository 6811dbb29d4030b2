// The [policy] and [socketmap] configuration: every problem found at once (validate.ts runs this for both
// `relaygate config check` and `run`), and the engine options of the policy service's own restriction list.
//
// Rules, each with its reason:
// - listen: "ip:port", "[v6]:port" or "unix:/absolute/path" (IP literals only: relaygate does no DNS for its
//   own endpoints); the two services may not share an address.
// - clients: CIDR blocks. Both protocols are unauthenticated, so a listen address outside loopback is an
//   error unless `clients` names a network beyond loopback (the operator has said who may connect).
// - policy.restrictions: compiled by the engine with listEnd 'dunno' (no reject needed, a bare `permit` is
//   an open relay and refused); problems are reported under `policy.restrictions`.
// - policy.tempfail_action: must be temporary — DEFER_IF_PERMIT, DEFER or a 4xx code, optional text. A
//   failure is never a permit and never a 5xx (ARCHITECTURE.md "fail closed, fail temporary").
// - policy.prepend_header: an RFC 5322 field name.
// - socketmap: map names without blanks, distinct; grant_action printable, one line, not empty.
// Security: see the rules; a configuration that would widen trust is an error, not a warning.

import type { Config } from '../../config/index.ts';
import type { EngineOptions, GrantLookup } from '../../engine/index.ts';
import type { Clock } from '../../clock.ts';
import type { Logger } from '../../log/logger.ts';
import { CidrSet, type Cidr } from '../../net/index.ts';
import { isRelaygateError } from '../../errors.ts';
import { where } from '../../config/load.ts';
import { isRemoteListen, listenText, parseListen, parseSocketMode } from './listen.ts';

const LOOPBACK = new CidrSet(['127.0.0.0/8', '::1/128']);

/** The policy service's engine: `[policy] restrictions` for MAIL and RCPT, ending in DUNNO. */
export function policyEngineOptions(
  config: Config,
  o: { mynetworks: CidrSet; grants: GrantLookup; clock: Clock; logger: Logger; sunset?: EngineOptions['sunset']; usage?: EngineOptions['usage'] },
): EngineOptions {
  const list = [...config.policy.restrictions];
  return {
    sunset: o.sunset,
    usage: o.usage,
    relayRestrictions: list,
    senderRestrictions: list,
    mynetworks: o.mynetworks,
    mydestination: [...config.mydestination],
    relayDomains: [...config.relay_domains],
    senderLoginMaps: [...config.sender_login_maps],
    grants: o.grants,
    clock: o.clock,
    logger: o.logger,
    listEnd: 'dunno',
  };
}

/**
 * The engine's problems for the policy list, renamed to `policy.restrictions` and without repeats (the list
 * is compiled twice, for MAIL and RCPT) and without sender_login_maps problems (the main engine reports those).
 */
export function policyRestrictionProblems(err: unknown, text = ''): string[] {
  if (!isRelaygateError(err)) throw err;
  const lines = err.details.length > 0 ? err.details : [err.message];
  const key = where(['policy', 'restrictions'], text);
  const out = new Set<string>();
  for (const l of lines) {
    if (l.startsWith('sender_login_maps')) continue;
    out.add(l.replace(/^(relay_restrictions|sender_restrictions)\b/, key));
  }
  return [...out];
}

/** `DEFER_IF_PERMIT text`, `DEFER text`, `4xx [x.y.z] text`; undefined when fine, else the problem. */
export function tempfailActionProblem(action: string): string | undefined {
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(action)) return 'must be one line of printable text';
  if (action.length > 512) return 'longer than 512 characters';
  if (/^(DEFER_IF_PERMIT|DEFER)(\s+\S.*)?$/i.test(action)) return undefined;
  const code = /^([245])\d\d(\s|$)/.exec(action);
  if (code) return code[1] === '4' ? undefined : `${action.slice(0, 3)} is not a temporary code: a failure must never be a permit or a permanent reject; use 4xx`;
  return `must be temporary: "DEFER_IF_PERMIT text", "DEFER text" or "4xx text" (e.g. "451 4.3.0 Service temporarily unavailable"); got ${JSON.stringify(action.split(/\s/)[0])}`;
}

function clientsProblems(key: string, entries: readonly string[]): { set: CidrSet | undefined; problems: string[] } {
  try {
    return { set: new CidrSet(entries, key), problems: [] };
  } catch (err) {
    if (!isRelaygateError(err)) throw err;
    return { set: undefined, problems: err.details.map((d) => `${key}: ${d}`) };
  }
}

function listenProblems(section: 'policy' | 'socketmap', listen: string, clients: CidrSet | undefined, mode: number | string, at: (key: string) => string): string[] {
  const out: string[] = [];
  const spec = parseListen(listen, { allowPortZero: true });
  if (typeof spec === 'string') return [`${at(`${section}.listen`)}: ${spec}`];
  if (isRemoteListen(spec) && clients !== undefined && clients.blocks.every(isLoopbackBlock)) {
    out.push(
      `${at(`${section}.listen`)}: ${listenText(spec)} is not a loopback address and the ${section} protocol has no authentication: list the Postfix hosts allowed to connect in ${section}.clients (e.g. ["192.0.2.25/32"]), or listen on 127.0.0.1 or a unix socket`,
    );
  }
  if (parseSocketMode(mode) === undefined) out.push(`${at(`${section}.socket_mode`)}: expected a file mode between 0000 and 0777`);
  return out;
}

/** A block inside loopback (127.0.0.0/8 or a part of it, ::1/128). */
function isLoopbackBlock(b: Cidr): boolean {
  const net = b.text.split('/')[0] ?? '';
  return LOOPBACK.contains(net) && (b.family === 4 ? b.prefix >= 8 : b.prefix === 128);
}

/** Every [policy]/[socketmap] problem except the restriction list's (see policyRestrictionProblems). */
export function postfixFrontendProblems(config: Config, text = ''): string[] {
  const problems: string[] = [];
  const at = (key: string): string => where(key.split('.'), text);
  const p = config.policy;
  const s = config.socketmap;
  if (p.listen !== undefined) {
    const c = clientsProblems(at('policy.clients'), p.clients);
    problems.push(...c.problems, ...listenProblems('policy', p.listen, c.set, p.socket_mode, at));
    const t = tempfailActionProblem(p.tempfail_action);
    if (t !== undefined) problems.push(`${at('policy.tempfail_action')}: ${t}`);
    if (p.prepend_header !== undefined && !/^[\x21-\x39\x3b-\x7e]{1,76}$/.test(p.prepend_header)) {
      problems.push(`${at('policy.prepend_header')}: ${JSON.stringify(p.prepend_header)} is not a header field name (printable ASCII without ":" or blanks, e.g. "X-Relaygate-Trust")`);
    }
  }
  if (s.listen !== undefined) {
    const c = clientsProblems(at('socketmap.clients'), s.clients);
    problems.push(...c.problems, ...listenProblems('socketmap', s.listen, c.set, s.socket_mode, at));
    for (const k of ['grant_map', 'sender_login_map'] as const) {
      if (!/^[\x21-\x7e]{1,100}$/.test(s[k])) problems.push(`${at(`socketmap.${k}`)}: ${JSON.stringify(s[k])} must be 1 to 100 printable characters without blanks (Postfix sends "<name> <key>")`);
    }
    if (s.grant_map === s.sender_login_map) problems.push(`${at('socketmap.sender_login_map')}: must differ from socketmap.grant_map ("${s.grant_map}")`);
    // eslint-disable-next-line no-control-regex
    if (/[\x00-\x1f\x7f]/.test(s.grant_action) || s.grant_action.trim() !== s.grant_action || s.grant_action.length > 1000) {
      problems.push(`${at('socketmap.grant_action')}: must be one line of printable text without leading or trailing blanks (e.g. "OK")`);
    }
  }
  if (p.listen !== undefined && s.listen !== undefined) {
    const a = parseListen(p.listen, { allowPortZero: true });
    const b = parseListen(s.listen, { allowPortZero: true });
    if (typeof a !== 'string' && typeof b !== 'string' && listenText(a) === listenText(b) && !(a.kind === 'tcp' && a.port === 0)) {
      problems.push(`${at('socketmap.listen')}: ${listenText(b)} is already used by policy.listen`);
    }
  }
  return problems;
}
