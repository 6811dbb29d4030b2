// The socketmap server over real sockets: netstring requests as Postfix's dict_sockmap sends them
// (`<len>:<map> <key>,`), every malformed netstring, and a store that fails. Only the access map is an
// in-memory GrantLookup; the sender-login tables are real relaygate tables (inline:, texthash:).
// The real-Postfix runs are in postfix-e2e.test.ts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CidrSet } from '../../../src/net/index.ts';
import { openTable, type LookupTable } from '../../../src/tables/index.ts';
import { startSocketmap, NetstringParser, netstring, type SocketmapServer } from '../../../src/frontends/postfix/socketmap.ts';
import type { Grant } from '../../../src/store/types.ts';
import { RawClient, MemoryGrants, captureLogger, waitEvent } from './wire.ts';

const tmp = await mkdtemp(join(tmpdir(), 'rg-socketmap-'));
const servers: SocketmapServer[] = [];
const tables: LookupTable[] = [];
after(async () => {
  for (const s of servers) await s.close(0);
  for (const t of tables) await t.close();
  await rm(tmp, { recursive: true, force: true });
});

async function setup(o: { grantAction?: string; grants?: { lookup(ip: string, now: number): Promise<Grant | undefined> }; tableSpecs?: string[]; requestTimeoutMs?: number } = {}) {
  const grants = new MemoryGrants();
  const { logger, lines } = captureLogger('debug');
  const senderLoginTables: LookupTable[] = [];
  for (const spec of o.tableSpecs ?? []) {
    const t = await openTable(spec);
    tables.push(t);
    senderLoginTables.push(t);
  }
  const srv = await startSocketmap({
    listen: { kind: 'tcp', host: '127.0.0.1', port: 0 },
    clients: new CidrSet(['127.0.0.0/8']),
    socketMode: 0o666,
    grants: o.grants ?? grants,
    clock: () => Date.now(),
    grantMap: 'grant',
    grantAction: o.grantAction ?? 'OK',
    senderLoginMap: 'sender_login',
    senderLoginTables,
    logger,
    ...(o.requestTimeoutMs !== undefined ? { requestTimeoutMs: o.requestTimeoutMs } : {}),
  });
  servers.push(srv);
  const port = Number(/:(\d+)$/.exec(srv.address)![1]);
  return { srv, grants, lines, port };
}

async function lookup(port: number, payload: string): Promise<string> {
  const c = await RawClient.connect({ port });
  try {
    c.write(netstring(payload));
    return await c.netstring();
  } finally {
    c.close();
  }
}

test('grant map: OK while the IP holds a grant, NOTFOUND otherwise, `unknown` and names never OK', async () => {
  const s = await setup();
  s.grants.add('127.0.0.21', 'alice');
  s.grants.add('2001:db8::7', 'bob');
  assert.equal(await lookup(s.port, 'grant 127.0.0.21'), 'OK OK');
  assert.equal(await lookup(s.port, 'grant 127.0.0.22'), 'NOTFOUND ');
  // Postfix asks for the client name first: `unknown` without reverse DNS
  assert.equal(await lookup(s.port, 'grant unknown'), 'NOTFOUND ');
  // IPv6 in any spelling, IPv4-mapped IPv4
  assert.equal(await lookup(s.port, 'grant 2001:DB8:0:0::7'), 'OK OK');
  assert.equal(await lookup(s.port, 'grant ::ffff:127.0.0.21'), 'OK OK');
  // an expired grant is absent
  s.grants.add('127.0.0.23', 'carol', Date.now() - 1);
  assert.equal(await lookup(s.port, 'grant 127.0.0.23'), 'NOTFOUND ');

  // Even a store that claims a grant for ANY key cannot make `unknown`, a hostname or junk OK.
  const liar = await setup({
    grants: {
      async lookup(ip) {
        return { ip, user: 'x', service: null, source: 'test', firstSeen: 0, lastSeen: 0, expires: Date.now() + 60_000, count: 1 };
      },
    },
  });
  for (const key of ['unknown', 'mail.example.com', 'UNKNOWN', '127.0.0', '127.0.0.21 extra', '[127.0.0.21]', '']) {
    const r = await lookup(liar.port, `grant ${key}`);
    assert.ok(r === 'NOTFOUND ' || r.startsWith('PERM '), `key ${JSON.stringify(key)} answered ${r}`);
  }
  assert.equal(await lookup(liar.port, 'grant 127.0.0.99'), 'OK OK');
});

test('grant_action: any action text, or expiry (Unix seconds, all-numerical = OK to Postfix)', async () => {
  const s = await setup({ grantAction: 'expiry' });
  const expires = Date.now() + 90_000;
  s.grants.add('127.0.0.21', 'alice', expires);
  assert.equal(await lookup(s.port, 'grant 127.0.0.21'), `OK ${Math.floor(expires / 1000)}`);
  const p = await setup({ grantAction: 'PREPEND X-Relay: pop-before-smtp' });
  p.grants.add('127.0.0.21', 'alice');
  assert.equal(await lookup(p.port, 'grant 127.0.0.21'), 'OK PREPEND X-Relay: pop-before-smtp');
});

test('store failure: TEMP (Postfix answers 451 4.3.0), logged; recovers', async () => {
  const s = await setup();
  s.grants.add('127.0.0.21', 'alice');
  s.grants.failing = true;
  const r = await lookup(s.port, 'grant 127.0.0.21');
  assert.match(r, /^TEMP /);
  assert.equal((await waitEvent(s.lines, 'socketmap_temp'))['client_ip'], '127.0.0.21');
  s.grants.failing = false;
  assert.equal(await lookup(s.port, 'grant 127.0.0.21'), 'OK OK');
  assert.equal(s.srv.stats().temp, 1);
});

test('sender_login map: owners from sender_login_maps, @domain only from tables with partial keys, TEMP on a table failure', async () => {
  const file = join(tmp, 'senders');
  await writeFile(file, 'alice@example.com alice\nshared@example.com alice, bob\n@team.example carol dave\n');
  const s = await setup({ tableSpecs: [`texthash:${file}`] });
  assert.equal(await lookup(s.port, 'sender_login alice@example.com'), 'OK alice');
  // texthash folds case like Postfix's indexed tables
  assert.equal(await lookup(s.port, 'sender_login ALICE@Example.COM'), 'OK alice');
  assert.equal(await lookup(s.port, 'sender_login shared@example.com'), 'OK alice,bob');
  assert.equal(await lookup(s.port, 'sender_login @team.example'), 'OK carol,dave');
  assert.equal(await lookup(s.port, 'sender_login nobody@example.com'), 'NOTFOUND ');
  assert.equal(await lookup(s.port, 'sender_login <>'), 'NOTFOUND ');

  // a table that fails: TEMP, never NOTFOUND (which would let reject_sender_login_mismatch misjudge)
  const failing: LookupTable = {
    spec: 'texthash:/broken',
    type: 'texthash',
    partialKeys: true,
    async get() {
      throw new Error('EIO: simulated read error');
    },
    async close() {},
  };
  const { logger, lines } = captureLogger('debug');
  const f = await startSocketmap({
    listen: { kind: 'tcp', host: '127.0.0.1', port: 0 },
    clients: new CidrSet(['127.0.0.0/8']),
    socketMode: 0o666,
    grants: new MemoryGrants(),
    clock: () => Date.now(),
    grantMap: 'grant',
    grantAction: 'OK',
    senderLoginMap: 'sender_login',
    senderLoginTables: [failing],
    logger,
  });
  servers.push(f);
  assert.match(await lookup(Number(/:(\d+)$/.exec(f.address)![1]), 'sender_login alice@example.com'), /^TEMP /);
  assert.equal((await waitEvent(lines, 'socketmap_temp'))['table'], 'texthash:/broken');
});

test('requests: unknown map and missing key are PERM; many lookups per connection; pipelined in order', async () => {
  const s = await setup();
  s.grants.add('127.0.0.21', 'alice');
  assert.match(await lookup(s.port, 'relay 127.0.0.21'), /^PERM unknown map name "relay"/);
  assert.match(await lookup(s.port, 'grant'), /^PERM bad request/);
  assert.match(await lookup(s.port, 'grant '), /^PERM bad request/);
  const c = await RawClient.connect({ port: s.port });
  try {
    for (let i = 0; i < 40; i++) {
      c.write(netstring(`grant 127.0.0.${i % 2 === 0 ? 21 : 22}`));
      assert.equal(await c.netstring(), i % 2 === 0 ? 'OK OK' : 'NOTFOUND ');
    }
    c.write(netstring('grant unknown') + netstring('grant 127.0.0.21') + netstring('grant 127.0.0.22'));
    assert.deepEqual([await c.netstring(), await c.netstring(), await c.netstring()], ['NOTFOUND ', 'OK OK', 'NOTFOUND ']);
    // split across writes, byte by byte
    for (const ch of netstring('grant 127.0.0.21')) c.write(ch);
    assert.equal(await c.netstring(), 'OK OK');
  } finally {
    c.close();
  }
  assert.equal(s.srv.stats().malformed, 0);
});

const MALFORMED: Array<[string, string | Buffer, RegExp]> = [
  ['non-digit length', 'x5:grant,', /non-digit/],
  ['no length', ':grant 1,', /without a length/],
  ['leading zero', '016:grant 127.0.0.21,', /leading zero/],
  ['seven digits', '1000000:', /more than 6 digits/],
  ['over 100000 bytes', '200000:grant ', /netstring of 200000 bytes/],
  ['missing comma', '16:grant 127.0.0.21;', /not terminated by ","/],
  ['length too short', '5:grant 127.0.0.21,', /not terminated by ","/],
  ['binary junk', Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01]), /non-digit \(0x16\)/],
  ['control character in the key', '17:grant 127.0.0.2\n1,', /control character 0x0a/],
  ['HTTP', 'GET / HTTP/1.0\r\n\r\n', /non-digit/],
];

test('malformed netstrings: logged, connection closed without a reply, the server unharmed', async () => {
  const s = await setup();
  s.grants.add('127.0.0.21', 'alice');
  for (const [name, bytes, reason] of MALFORMED) {
    const c = await RawClient.connect({ port: s.port });
    c.write(bytes);
    assert.equal(await c.waitClosed(), true, `${name}: not closed`);
    assert.equal(c.buf.length, 0, `${name}: got ${JSON.stringify(c.buf.toString())}`);
    const ev = s.lines.filter((l) => l['event'] === 'socketmap_malformed').at(-1);
    assert.match(String(ev?.['reason']), reason, name);
    assert.equal(await lookup(s.port, 'grant 127.0.0.21'), 'OK OK', `${name}: server broken afterwards`);
  }
  assert.equal(s.srv.stats().malformed, MALFORMED.length);
  // EOF in the middle of a netstring, and one that never finishes
  const t = await setup({ requestTimeoutMs: 300 });
  const c = await RawClient.connect({ port: t.port });
  c.write('16:grant 127');
  c.sock.end();
  assert.equal(await c.waitClosed(), true);
  assert.match(String((await waitEvent(t.lines, 'socketmap_malformed'))['reason']), /closed in the middle/);
  const c2 = await RawClient.connect({ port: t.port });
  c2.write('16:grant 127');
  assert.equal(await c2.waitClosed(3000), true);
  assert.ok(t.lines.some((l) => l['event'] === 'socketmap_malformed' && /not finished within 0\.3 s/.test(String(l['reason']))));
});

test('parser unit: 0-length netstring, exactly 100000 bytes accepted, partial input kept', () => {
  const p = new NetstringParser();
  assert.deepEqual(p.feed(Buffer.from('0:,')).payloads.map(String), ['']);
  const big = 'g '.padEnd(100_000, 'x');
  const r = p.feed(Buffer.from(`100000:${big},`));
  assert.equal(r.error, undefined);
  assert.equal(r.payloads[0]?.length, 100_000);
  const r1 = p.feed(Buffer.from('5:ab'));
  assert.equal(r1.payloads.length, 0);
  assert.equal(p.midRequest, true);
  const r2 = p.feed(Buffer.from('cde,'));
  assert.deepEqual(r2.payloads.map(String), ['abcde']);
  assert.equal(p.midRequest, false);
});
