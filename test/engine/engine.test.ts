// createEngine(): validation (every problem at once, the open-relay rule, tables that fail to open), the
// registry kept in step with README and the golden transcripts, structured logging, and fail-closed paths.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { readdir, readFile, access } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { createEngine, RESTRICTIONS, type EngineOptions, type GrantLookup } from '../../src/engine/index.ts';
import { CidrSet } from '../../src/net/index.ts';
import { createLogger, silentLogger } from '../../src/log/logger.ts';
import { RelaygateError } from '../../src/errors.ts';
import type { LookupTable } from '../../src/tables/index.ts';
import type { Grant } from '../../src/store/types.ts';

const NOW = Date.UTC(2026, 10, 21, 10, 0, 0);
const GRANT: Grant = { ip: '192.0.2.7', user: 'alice', service: 'pop3', source: 'dovecot', firstSeen: NOW, lastSeen: NOW, expires: NOW + 1_800_000, count: 1 };

function options(over: Partial<EngineOptions> = {}): EngineOptions {
  return {
    relayRestrictions: ['permit_mynetworks', 'permit_sasl_authenticated', 'permit_pop_before_smtp', 'reject_unauth_destination'],
    senderRestrictions: [],
    mynetworks: new CidrSet(['127.0.0.0/8']),
    mydestination: ['example.com'],
    relayDomains: [],
    senderLoginMaps: [],
    grants: { lookup: async (ip) => (ip === GRANT.ip ? GRANT : undefined) },
    clock: () => NOW,
    logger: silentLogger(),
    ...over,
  };
}

function memoryTable(spec: string, entries: Record<string, string>, closed: string[] = []): LookupTable {
  return {
    spec,
    type: spec.split(':')[0]!,
    partialKeys: true,
    async get(key) {
      return entries[key.toLowerCase()];
    },
    async close() {
      closed.push(spec);
    },
  };
}

async function problems(over: Partial<EngineOptions>): Promise<RelaygateError> {
  try {
    await createEngine(options(over));
  } catch (err) {
    assert.ok(err instanceof RelaygateError, String(err));
    assert.equal(err.code, 'RG_ERR_RESTRICTION');
    return err;
  }
  assert.fail('createEngine accepted a bad configuration');
}

function capture(): { logger: ReturnType<typeof createLogger>; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: createLogger({ level: 'info', destination: sink }), lines };
}

test('every problem is reported at once, one detail each, each naming its list', async () => {
  const closed: string[] = [];
  const err = await problems({
    relayRestrictions: ['permit_mynetworks', 'permit_everyone', 'check_client_access texthash:/nonexistent/access', 'check_client_access', 'reject foo', ''],
    senderRestrictions: ['check_sender_access inline:{ a=OK }', 'reject_authenticated_sender_login_mismatch'],
    senderLoginMaps: ['nope'],
    relayDomains: ['a b'],
    openTable: async (spec) => {
      if (spec.startsWith('inline:')) return memoryTable(spec, { a: 'OK' }, closed);
      throw new RelaygateError('RG_ERR_TABLE_OPEN', `${spec}: cannot read it`, { details: ['first detail'] });
    },
  });
  const d = err.details;
  assert.match(err.message, /^restriction configuration: \d+ problems$/);
  assert.equal(d.length, Number(/(\d+)/.exec(err.message)![1]));
  const expect = [
    /^relay_domains: "a b" is not a domain name/,
    /^relay_restrictions: entry 2 "permit_everyone": unknown restriction/,
    /^relay_restrictions: entry 3 "check_client_access texthash:\/nonexistent\/access": texthash:\/nonexistent\/access: cannot read it \(first detail\)$/,
    /^relay_restrictions: entry 4 "check_client_access": needs a table argument/,
    /^relay_restrictions: entry 5 "reject foo": reject takes no argument/,
    /^relay_restrictions: entry 6 is empty$/,
    /^sender_login_maps: entry 1 "nope": nope: cannot read it/,
  ];
  for (const re of expect) assert.ok(d.some((x) => re.test(x)), `missing ${re}\n${d.join('\n')}`);
  // every detail starts with the key it belongs to, so `config check` can add the line number
  for (const x of d) assert.match(x, /^(relay_restrictions|sender_restrictions|sender_login_maps|relay_domains|mydestination)\b/);
  // the tables that did open were closed again
  assert.deepEqual(closed, ['inline:{ a=OK }']);
});

test('a relay list that cannot refuse anything is refused: it would be an open relay', async () => {
  for (const list of [[], ['permit_mynetworks', 'permit_pop_before_smtp'], ['permit_mynetworks', 'warn_if_reject', 'reject_unauth_destination'], ['permit', 'reject']]) {
    const err = await problems({ relayRestrictions: list });
    assert.match(err.details.join('\n'), /open relay/, JSON.stringify(list));
  }
  for (const list of [['reject_unauth_destination'], ['defer_unauth_destination'], ['reject'], ['defer'], ['defer_if_permit', 'permit'], ['warn_if_reject', 'reject', 'reject_unauth_destination'], ['reject_unauth_destination', 'permit']]) {
    const e = await createEngine(options({ relayRestrictions: list }));
    await e.close();
  }
});

test('the sender-login restrictions need sender_login_maps', async () => {
  const err = await problems({ senderRestrictions: ['reject_sender_login_mismatch'] });
  assert.match(err.details[0]!, /^sender_restrictions: entry 1 "reject_sender_login_mismatch" needs sender_login_maps/);
});

test('a table that fails to open is a problem carrying its RG_ERR_TABLE_* message (real registry)', async () => {
  const err = await problems({ relayRestrictions: ['check_client_access texthash:/nonexistent/access', 'check_client_access hash:/etc/x', 'reject_unauth_destination'] });
  const d = err.details.join('\n');
  assert.match(d, /texthash:\/nonexistent\/access: cannot read \/nonexistent\/access: ENOENT/);
  assert.match(d, /unknown table type "hash"/);
});

test('tables are opened once per spec, and closed once by close()', async () => {
  const opened: string[] = [];
  const closed: string[] = [];
  const spec = 'mem:access';
  const e = await createEngine(
    options({
      relayRestrictions: [`check_client_access ${spec}`, 'reject_unauth_destination'],
      senderRestrictions: [`check_sender_access ${spec}`],
      senderLoginMaps: [spec],
      openTable: async (s) => {
        opened.push(s);
        return memoryTable(s, {}, closed);
      },
    }),
  );
  assert.deepEqual(e.describe(), { relay: [`check_client_access ${spec}`, 'reject_unauth_destination'], sender: [`check_sender_access ${spec}`] });
  await e.close();
  await e.close();
  assert.deepEqual(opened, [spec]);
  assert.deepEqual(closed, [spec]);
});

test('each decision logs one line with structured fields, and returns that line', async () => {
  const { logger, lines } = capture();
  const e = await createEngine(options({ logger }));
  const d = await e.decide({ stage: 'rcpt', clientIp: '192.0.2.7', sender: 'alice@example.com', recipient: 'bob@remote.example', protocol: 'ESMTP', helo: 'client.example' });
  assert.equal(d.action, 'permit');
  assert.equal(d.decidedBy, 'permit_pop_before_smtp');
  assert.deepEqual(d.grant, GRANT);
  assert.equal(lines.length, 1);
  assert.equal(lines[0]!.msg, d.logLine);
  assert.equal(d.logLine, 'NOQUEUE: permit: RCPT from unknown[192.0.2.7]: permit_pop_before_smtp user=alice source=dovecot; from=<alice@example.com> to=<bob@remote.example> proto=ESMTP helo=<client.example>');
  assert.equal(lines[0]!.client_ip, '192.0.2.7');
  assert.equal(lines[0]!.stage, 'rcpt');
  assert.equal(lines[0]!.action, 'permit');
  assert.equal(lines[0]!.restriction, 'permit_pop_before_smtp');
  assert.equal(lines[0]!.level, 'info');
  // JSON form (for `relaygate check --json` and the HTTP status page) includes the log line
  const json = JSON.parse(JSON.stringify(d)) as Record<string, unknown>;
  assert.equal(json.logLine, d.logLine);
  assert.equal(json.decidedBy, 'permit_pop_before_smtp');

  const r = await e.decide({ stage: 'rcpt', clientIp: '203.0.113.9', recipient: 'bob@remote.example' });
  assert.deepEqual([r.action, r.code, r.dsn, r.text], ['reject', 554, '5.7.1', '<bob@remote.example>: Relay access denied']);
  assert.equal(lines.length, 2);
  assert.equal(lines[1]!.code, 554);
  assert.equal(lines[1]!.restriction, 'reject_unauth_destination');
  await e.close();
});

test('the log line is built lazily: a silent logger never builds it unless asked', async () => {
  const e = await createEngine(options());
  const d = await e.decide({ stage: 'rcpt', clientIp: '127.0.0.1', recipient: 'x@remote.example' });
  assert.equal(d.logLine, 'NOQUEUE: permit: RCPT from unknown[127.0.0.1]: permit_mynetworks 127.0.0.0/8; to=<x@remote.example>');
  assert.equal(d.logLine, d.logLine);
});

test('store failures defer (451 4.3.0) whether the lookup throws or rejects, or lookupSync throws; never permit, never 5xx', async () => {
  const grantsList: GrantLookup[] = [
    {
      lookup: async () => {
        throw new Error('EIO');
      },
    },
    {
      lookup: (() => {
        throw new Error('sync boom');
      }) as () => Promise<Grant | undefined>,
    },
    // a store that answers at once (LMDB's lookupSync): the failure is the same 451
    {
      lookup: async () => GRANT,
      lookupSync: () => {
        throw new Error('MDB_CORRUPTED');
      },
    },
  ];
  for (const grants of grantsList) {
    const { logger, lines } = capture();
    const e = await createEngine(options({ grants, logger }));
    const d = await e.decide({ stage: 'rcpt', clientIp: '192.0.2.7', recipient: 'bob@remote.example' });
    assert.deepEqual([d.action, d.code, d.dsn, d.text], ['defer', 451, '4.3.0', '<unknown[192.0.2.7]>: Temporary lookup failure']);
    assert.equal(d.decidedBy, 'permit_pop_before_smtp');
    assert.ok(lines.some((l) => l.level === 'warn' && /access map lookup of 192\.0\.2\.7 failed/.test(String(l.msg))));
    await e.close();
  }
});

test('an unexpected exception in a restriction answers 451 and is logged as an error', async () => {
  const { logger, lines } = capture();
  // A table whose partialKeys getter throws simulates a bug deep inside a restriction.
  const bad = {
    spec: 'mem:bad',
    type: 'mem',
    get partialKeys(): boolean {
      throw new Error('boom');
    },
    get: async () => undefined,
    close: async () => {},
  } satisfies LookupTable;
  const e = await createEngine(options({ relayRestrictions: ['check_client_access mem:bad', 'reject_unauth_destination'], openTable: async () => bad, logger }));
  const d = await e.decide({ stage: 'rcpt', clientIp: '192.0.2.1', recipient: 'bob@remote.example' });
  assert.deepEqual([d.action, d.code, d.dsn, d.text], ['defer', 451, '4.3.0', 'Error: internal error']);
  assert.ok(lines.some((l) => l.level === 'error' && /boom/.test(String(l.msg))));
  // a request without a usable client address is an unknown client, not a crash
  const n = await e.decide({ stage: 'rcpt', clientIp: undefined as unknown as string, recipient: 'bob@remote.example' });
  assert.equal(n.action, 'reject'); // no key to look up, so the broken table is not even asked
  assert.match(n.logLine, /RCPT from unknown\[\]: 554 5\.7\.1 <bob@remote\.example>: Relay access denied/);
  // an unknown stage is also a 4xx, not a throw
  const s = await e.decide({ stage: 'data' as 'rcpt', clientIp: '192.0.2.1' });
  assert.deepEqual([s.action, s.code], ['defer', 451]);
  await e.close();
});

test('concurrent decisions do not share state (warn_if_reject, defer_if_permit, grants)', async () => {
  let calls = 0;
  const e = await createEngine(
    options({
      relayRestrictions: ['permit_mynetworks', 'warn_if_reject', 'reject_unauth_destination', 'permit_pop_before_smtp', 'defer_if_permit', 'reject'],
      grants: {
        lookup: async (ip) => {
          calls++;
          await new Promise((r) => setTimeout(r, Math.random() * 3));
          return ip === GRANT.ip ? GRANT : undefined;
        },
      },
    }),
  );
  const reqs = Array.from({ length: 200 }, (_, i) => ({ stage: 'rcpt' as const, clientIp: i % 2 ? '192.0.2.7' : '203.0.113.9', recipient: 'bob@remote.example' }));
  const ds = await Promise.all(reqs.map((r) => e.decide(r)));
  ds.forEach((d, i) => {
    if (i % 2) {
      assert.equal(d.action, 'permit', `request ${i}`);
      assert.equal(d.trace.length, 4);
    } else {
      assert.equal(d.action, 'reject', `request ${i}`);
      assert.equal(d.decidedBy, 'reject');
    }
  });
  assert.equal(calls, 200, 'one grant lookup per request');
  await e.close();
});

test('the grant store is asked at most once per request, even when several restrictions need it', async () => {
  let calls = 0;
  const e = await createEngine(
    options({
      relayRestrictions: ['reject_sender_login_mismatch', 'permit_pop_before_smtp', 'reject_unauth_destination'],
      senderLoginMaps: ['mem:logins'],
      openTable: async (s) => memoryTable(s, { 'alice@example.com': 'alice' }),
      grants: {
        lookup: async (ip) => {
          calls++;
          return ip === GRANT.ip ? GRANT : undefined;
        },
      },
    }),
  );
  const d = await e.decide({ stage: 'rcpt', clientIp: '192.0.2.7', sender: 'alice@example.com', recipient: 'bob@remote.example' });
  assert.equal(d.action, 'permit');
  assert.equal(calls, 1);
  await e.close();
});

// ---------- the registry ----------

const HERE = fileURLToPath(new URL('.', import.meta.url));

test('registry: names are unique Postfix-style snake_case, docs are one line', () => {
  const names = RESTRICTIONS.map((r) => r.name);
  assert.equal(new Set(names).size, names.length);
  for (const r of RESTRICTIONS) {
    assert.match(r.name, /^[a-z]+(_[a-z]+)*$/);
    assert.ok(r.doc.length > 0 && !r.doc.includes('\n'), r.name);
  }
});

test('registry: one file per restriction, named after it in kebab-case', async () => {
  for (const r of RESTRICTIONS) {
    await access(new URL(`../../src/engine/restrictions/${r.name.replaceAll('_', '-')}.ts`, import.meta.url));
  }
});

test('registry: README "Restrictions" lists exactly the registry, in order, with the same docs', async () => {
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
  const block = /<!-- restrictions:start -->\n([\s\S]*?)<!-- restrictions:end -->/.exec(readme)?.[1];
  assert.ok(block, 'README has a restrictions block');
  const rows = block.split('\n').filter((l) => l.startsWith('| `'));
  const expected = RESTRICTIONS.map((r) => `| \`${r.name}${r.takesTable ? ' type:name' : ''}\` | ${r.doc} |`);
  assert.deepEqual(rows, expected);
});

test('registry: every restriction appears in a golden transcript', async () => {
  const inputs = (await readdir(HERE)).filter((f) => f.endsWith('.in'));
  const text = (await Promise.all(inputs.map((f) => readFile(`${HERE}/${f}`, 'utf8')))).join('\n');
  const configLines = text.split('\n').filter((l) => l.startsWith('config relay_restrictions') || l.startsWith('config sender_restrictions'));
  for (const r of RESTRICTIONS) {
    assert.ok(configLines.some((l) => new RegExp(`[=,]\\s*${r.name}\\b`, 'i').test(l)), `no transcript uses ${r.name}`);
  }
});

test('lookupSync (LMDB) and lookup (Redis) give the same decisions; a list with a table goes on asynchronously', async () => {
  const sync: GrantLookup = { lookup: async () => assert.fail('lookup must not be used when lookupSync exists'), lookupSync: (ip) => (ip === GRANT.ip ? GRANT : undefined) };
  const table = memoryTable('inline:x', { '192.0.2.99': 'REJECT go away' });
  for (const grants of [sync, options().grants]) {
    const e = await createEngine(
      options({ grants, relayRestrictions: ['check_client_access inline:x', 'permit_pop_before_smtp', 'reject_unauth_destination'], openTable: async () => table }),
    );
    const ok = await e.decide({ stage: 'rcpt', clientIp: GRANT.ip, recipient: 'bob@remote.example' });
    assert.deepEqual([ok.action, ok.decidedBy], ['permit', 'permit_pop_before_smtp']);
    const no = await e.decide({ stage: 'rcpt', clientIp: '192.0.2.8', recipient: 'bob@remote.example' });
    assert.deepEqual([no.action, no.code], ['reject', 554]);
    const tab = await e.decide({ stage: 'rcpt', clientIp: '192.0.2.99', recipient: 'bob@remote.example' });
    assert.deepEqual([tab.action, tab.code, tab.decidedBy], ['reject', 554, 'check_client_access inline:x']);
    await e.close();
  }
});
