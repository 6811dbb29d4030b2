// The golden-transcript runner for the engine (Postfix's smtpd_check.in/.ref idea): a small command language
// drives a real engine, and every request is echoed with its verdict, trace and the log lines it produced.
//
//   # comment                         echoed
//   config KEY = a, b, c              relay_restrictions | sender_restrictions | mynetworks | mydestination |
//                                     relay_domains | sender_login_maps; commas inside { } are kept; `$DIR` is
//                                     the scratch directory; the engine is rebuilt before the next request
//   table NAME <<END ... END          writes $DIR/NAME (rebuilds the engine: tables are read at open)
//   clock 2026-11-21T10:00:00Z        set the clock;  advance 31m   move it (s, m, h, d)
//   grant IP [user=U] [source=S] [service=S] [ttl=30m]   a login: new grant, or a sliding refresh
//   ungrant IP
//   fail grants | fail table NAME     lookups throw;   recover   they work again
//   default k=v ...                   request fields used when a request does not give them (a default
//                                     rcpt= is not used by `mail`: MAIL comes before RCPT)
//   rcpt k=v ... / mail k=v ...       a decision at RCPT / MAIL; keys: client name helo proto sasl method
//                                     sender rcpt; values may be 'single quoted' with \n \r \t \xNN \\ \'
//
// The grant store here is a small in-memory `lookup` (expiry honoured: expired = absent) — enough for the
// engine; the real stores are covered by test/store/contract.ts.
// Security: scratch files only, in a fresh temporary directory.

import { Writable } from 'node:stream';
import { basename, join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { createEngine, type DecisionRequest, type Engine, type EngineOptions } from '../../src/engine/index.ts';
import { CidrSet } from '../../src/net/index.ts';
import { manualClock } from '../../src/clock.ts';
import { createLogger } from '../../src/log/logger.ts';
import { printable } from '../../src/log/format.ts';
import { openTable, type LookupTable } from '../../src/tables/index.ts';
import { RelaygateError, isRelaygateError } from '../../src/errors.ts';
import type { Grant } from '../../src/store/types.ts';

type ListKey = 'relay_restrictions' | 'sender_restrictions' | 'mynetworks' | 'mydestination' | 'relay_domains' | 'sender_login_maps';

const DEFAULT_CONFIG: Record<ListKey, string[]> = {
  relay_restrictions: ['permit_mynetworks', 'permit_sasl_authenticated', 'permit_pop_before_smtp', 'reject_unauth_destination'],
  sender_restrictions: [],
  mynetworks: ['127.0.0.0/8', '[::1]/128'],
  mydestination: ['localhost'],
  relay_domains: [],
  sender_login_maps: [],
};

const REQUEST_KEYS = new Set(['client', 'name', 'helo', 'proto', 'sasl', 'method', 'sender', 'rcpt']);

/** In-memory grants with sliding expiry, as the real stores behave (see test/store/contract.ts). */
class MemoryGrants {
  readonly grants = new Map<string, Grant>();
  failing = false;

  record(ip: string, now: number, opts: { user?: string; source?: string; service?: string; ttlMs: number }): Grant {
    const old = this.grants.get(ip);
    const live = old !== undefined && old.expires > now ? old : undefined;
    const g: Grant = {
      ip,
      user: opts.user ?? null,
      service: opts.service ?? null,
      source: opts.source ?? 'test',
      firstSeen: live?.firstSeen ?? now,
      lastSeen: now,
      expires: now + opts.ttlMs,
      count: (live?.count ?? 0) + 1,
    };
    this.grants.set(ip, g);
    return g;
  }

  async lookup(ip: string, now: number): Promise<Grant | undefined> {
    if (this.failing) throw new RelaygateError('RG_ERR_STORE_IO', 'simulated store failure (MDB_PANIC)');
    const g = this.grants.get(ip);
    return g !== undefined && g.expires > now ? g : undefined;
  }
}

function parseDuration(text: string): number {
  const m = /^(\d+)(s|m|h|d)?$/.exec(text);
  if (!m) throw new Error(`bad duration ${text}`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd'] * 1000;
}

function unescape(s: string): string {
  return s.replace(/\\(x[0-9a-fA-F]{2}|.)/g, (_, e: string) =>
    e[0] === 'x' ? String.fromCharCode(parseInt(e.slice(1), 16)) : ({ n: '\n', r: '\r', t: '\t' } as Record<string, string>)[e] ?? e,
  );
}

/** `k=v k2='quoted value'` → pairs; a bare `k=` is the empty string (the null sender). */
function parsePairs(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const re = /\s*([a-z]+)=(?:'((?:[^'\\]|\\.)*)'|(\S*))/gy;
  let m: RegExpExecArray | null;
  let last = 0;
  while ((m = re.exec(text)) !== null) {
    out.set(m[1]!, m[2] !== undefined ? unescape(m[2]) : m[3]!);
    last = re.lastIndex;
  }
  if (text.slice(last).trim() !== '') throw new Error(`cannot parse ${JSON.stringify(text.slice(last))}`);
  return out;
}

/** Splits a config value on commas that are not inside braces. */
function splitList(value: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of value) {
    if (ch === '{') depth++;
    if (ch === '}') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur.trim());
      cur = '';
    } else cur += ch;
  }
  if (cur.trim() !== '' || out.length > 0) out.push(cur.trim());
  return out;
}

function pad(s: string, n: number): string {
  return s.length >= n ? `${s} ` : s.padEnd(n + 1);
}

export async function runTranscript(input: string, dir: string): Promise<string> {
  const out: string[] = [];
  const config: Record<ListKey, string[]> = structuredClone(DEFAULT_CONFIG);
  const clock = manualClock(Date.UTC(2026, 10, 21, 10, 0, 0));
  const grants = new MemoryGrants();
  const failingTables = new Set<string>();
  const defaults = new Map<string, string>();
  const logs: Array<{ level: string; msg: string }> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line === '') continue;
        const rec = JSON.parse(line) as { level: string; msg: string };
        logs.push({ level: rec.level, msg: rec.msg });
      }
      cb();
    },
  });
  const logger = createLogger({ level: 'info', destination: sink });
  let engine: Engine | undefined;
  let dirty = true;
  const sub = (s: string) => s.replaceAll('$DIR', dir);
  const unsub = (s: string) => s.replaceAll(dir, '$DIR');

  const wrapTable = (t: LookupTable): LookupTable => ({
    spec: t.spec,
    type: t.type,
    partialKeys: t.partialKeys,
    ...(t.warnings === undefined ? {} : { warnings: t.warnings }),
    async get(key: string) {
      if (failingTables.has(basename(t.spec))) throw new RelaygateError('RG_ERR_TABLE_LOOKUP', `${t.spec}: simulated read error (EIO)`);
      return t.get(key);
    },
    close: () => t.close(),
  });

  const flushLogs = () => {
    for (const l of logs.splice(0)) out.push(`  log ${l.level}: ${unsub(l.msg)}`);
  };

  async function ensureEngine(): Promise<Engine | undefined> {
    if (!dirty) return engine;
    await engine?.close();
    engine = undefined;
    dirty = false;
    const opts: EngineOptions = {
      relayRestrictions: config.relay_restrictions.map(sub),
      senderRestrictions: config.sender_restrictions.map(sub),
      mynetworks: new CidrSet(config.mynetworks),
      mydestination: config.mydestination,
      relayDomains: config.relay_domains,
      senderLoginMaps: config.sender_login_maps.map(sub),
      grants,
      clock,
      logger,
      openTable: async (spec) => wrapTable(await openTable(spec)),
    };
    try {
      engine = await createEngine(opts);
    } catch (err) {
      if (!isRelaygateError(err)) throw err;
      out.push(`  error: ${err.code} ${unsub(err.message)}`);
      for (const d of err.details) out.push(`    - ${unsub(d)}`);
    }
    flushLogs();
    return engine;
  }

  const lines = input.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) {
      out.push(line);
      continue;
    }
    const [cmd = '', ...restWords] = trimmed.split(/\s+/);
    const rest = trimmed.slice(cmd.length).trim();
    if (cmd !== 'table') out.push(line);
    switch (cmd) {
      case 'config': {
        const m = /^([a-z_]+)\s*=\s*(.*)$/.exec(rest);
        if (!m || !(m[1]! in config)) throw new Error(`line ${i + 1}: bad config ${rest}`);
        config[m[1] as ListKey] = splitList(m[2]!);
        dirty = true;
        break;
      }
      case 'table': {
        const m = /^(\S+)\s+<<(\S+)$/.exec(rest);
        if (!m) throw new Error(`line ${i + 1}: expected table NAME <<END`);
        const body: string[] = [];
        out.push(line);
        for (i++; i < lines.length && lines[i] !== m[2]; i++) {
          body.push(lines[i]!);
          out.push(lines[i]!);
        }
        out.push(m[2]!);
        await writeFile(join(dir, m[1]!), body.length > 0 ? `${body.join('\n')}\n` : '');
        dirty = true;
        break;
      }
      case 'clock':
        clock.set(Date.parse(rest));
        break;
      case 'advance':
        clock.advance(parseDuration(rest));
        out.push(`  now ${new Date(clock()).toISOString()}`);
        break;
      case 'grant': {
        const [ip = '', ...kv] = restWords;
        const p = parsePairs(kv.join(' '));
        const g = grants.record(ip, clock(), {
          ...(p.has('user') ? { user: p.get('user')! } : {}),
          ...(p.has('source') ? { source: p.get('source')! } : {}),
          ...(p.has('service') ? { service: p.get('service')! } : {}),
          ttlMs: parseDuration(p.get('ttl') ?? '30m'),
        });
        out.push(`  grant ${g.ip} user=${printable(g.user ?? '-')} expires ${new Date(g.expires).toISOString()} count=${g.count}`);
        break;
      }
      case 'ungrant':
        grants.grants.delete(rest);
        break;
      case 'fail':
        if (rest === 'grants') grants.failing = true;
        else if (restWords[0] === 'table' && restWords[1] !== undefined) failingTables.add(restWords[1]);
        else throw new Error(`line ${i + 1}: fail grants | fail table NAME`);
        break;
      case 'recover':
        grants.failing = false;
        failingTables.clear();
        break;
      case 'default':
        for (const [k, v] of parsePairs(rest)) {
          if (!REQUEST_KEYS.has(k)) throw new Error(`line ${i + 1}: unknown request key ${k}`);
          defaults.set(k, v);
        }
        break;
      case 'rcpt':
      case 'mail': {
        // MAIL comes before RCPT: a default recipient does not apply to `mail` (an explicit rcpt= does).
        const p = new Map([...[...defaults].filter(([k]) => cmd === 'rcpt' || k !== 'rcpt'), ...parsePairs(rest)]);
        for (const k of p.keys()) if (!REQUEST_KEYS.has(k)) throw new Error(`line ${i + 1}: unknown request key ${k}`);
        const eng = await ensureEngine();
        if (eng === undefined) {
          out.push('  (no engine: the configuration above was refused)');
          break;
        }
        const req: DecisionRequest = {
          stage: cmd,
          clientIp: p.get('client') ?? '',
          ...(p.has('name') ? { clientName: p.get('name')! } : {}),
          ...(p.has('helo') ? { helo: p.get('helo')! } : {}),
          ...(p.has('proto') ? { protocol: p.get('proto')! } : {}),
          ...(p.has('sasl') ? { saslUser: p.get('sasl')! } : {}),
          ...(p.has('method') ? { saslMethod: p.get('method')! } : {}),
          ...(p.has('sender') ? { sender: p.get('sender')! } : {}),
          ...(p.has('rcpt') ? { recipient: p.get('rcpt')! } : {}),
        };
        const d = await eng.decide(req);
        const reply = d.code === null ? '' : ` ${d.code} ${d.dsn} ${d.text}`;
        out.push(`  -> ${d.action.toUpperCase()}${reply}${d.decidedBy === null ? '  [end of list]' : `  [${d.decidedBy}]`}`);
        for (const t of d.trace) out.push(`     ${pad(t.restriction, 44)}${pad(t.result, 6)}${t.detail ?? ''}`.trimEnd());
        // The line returned must be the line logged, exactly once.
        const decisionLogs = logs.filter((l) => l.msg === d.logLine);
        if (decisionLogs.length !== 1) out.push(`  !! logLine was logged ${decisionLogs.length} times`);
        flushLogs();
        break;
      }
      default:
        throw new Error(`line ${i + 1}: unknown command ${cmd}`);
    }
  }
  await engine?.close();
  return `${out.map(unsub).join('\n')}\n`;
}
