// The policy delegation service over real sockets (TCP on 127.0.0.1 and a unix socket), fed the exact bytes
// Postfix 3.7.11 sends (test/fixtures/postfix/policy-request-*.txt) and every kind of malformed input.
// The engine is the real one (createEngine with listEnd 'dunno'); only the access map is an in-memory
// GrantLookup, so a store failure can be switched on. The real-Postfix runs are in policy-e2e.test.ts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEngine, type Engine } from '../../../src/engine/index.ts';
import { CidrSet } from '../../../src/net/index.ts';
import { startPolicyService, PolicyRequestParser, MAX_ATTRIBUTES, postfixText, type PolicyService } from '../../../src/frontends/postfix/policy.ts';
import { tempfailActionProblem } from '../../../src/frontends/postfix/config.ts';
import { RawClient, MemoryGrants, captureLogger, fixtureRequest, waitEvent } from './wire.ts';

const tmp = await mkdtemp(join(tmpdir(), 'rg-policy-'));
after(() => rm(tmp, { recursive: true, force: true }));

interface Setup {
  svc: PolicyService;
  grants: MemoryGrants;
  engine: Engine;
  lines: Array<Record<string, unknown>>;
  port: number;
}

const running: Setup[] = [];
after(async () => {
  for (const s of running) {
    await s.svc.close(0);
    await s.engine.close();
  }
});

async function setup(o: { restrictions?: string[]; tempfail?: string; prepend?: string; senderLoginMaps?: string[]; listen?: string; clients?: string[]; requestTimeoutMs?: number; mydestination?: string[] } = {}): Promise<Setup> {
  const grants = new MemoryGrants();
  const { logger, lines } = captureLogger('debug');
  const list = o.restrictions ?? ['permit_pop_before_smtp'];
  const engine = await createEngine({
    relayRestrictions: list,
    senderRestrictions: list,
    mynetworks: new CidrSet(['127.0.0.1/32']),
    mydestination: o.mydestination ?? ['local.example'],
    relayDomains: [],
    senderLoginMaps: o.senderLoginMaps ?? [],
    grants,
    clock: () => Date.now(),
    logger,
    listEnd: 'dunno',
  });
  const listen = o.listen === undefined ? { kind: 'tcp' as const, host: '127.0.0.1', port: 0 } : { kind: 'unix' as const, path: o.listen };
  const svc = await startPolicyService({
    listen,
    clients: new CidrSet(o.clients ?? ['127.0.0.0/8', '::1/128']),
    socketMode: 0o660,
    engine,
    tempfailAction: o.tempfail ?? 'DEFER_IF_PERMIT Service temporarily unavailable',
    prependHeader: o.prepend,
    logger,
    ...(o.requestTimeoutMs !== undefined ? { requestTimeoutMs: o.requestTimeoutMs } : {}),
  });
  const port = listen.kind === 'tcp' ? Number(/:(\d+)$/.exec(svc.address)![1]) : 0;
  const s = { svc, grants, engine, lines, port };
  running.push(s);
  return s;
}

async function ask(s: Setup, request: string): Promise<string> {
  const c = await RawClient.connect({ port: s.port });
  try {
    c.write(request);
    return await c.policyReply();
  } finally {
    c.close();
  }
}

test('captured Postfix 3.7 requests: OK for a granted client, DUNNO for a stranger, ipv6 and END-OF-MESSAGE', async () => {
  const s = await setup();
  assert.equal(await ask(s, fixtureRequest('rcpt')), 'DUNNO'); // 127.0.0.7 holds no grant
  s.grants.add('127.0.0.7', 'alice');
  assert.equal(await ask(s, fixtureRequest('rcpt')), 'OK');
  assert.equal(await ask(s, fixtureRequest('ipv6')), 'DUNNO');
  s.grants.add('::1', 'bob');
  assert.equal(await ask(s, fixtureRequest('ipv6')), 'OK');
  // relaygate decides MAIL and RCPT only; the end of the message is no question for it
  const before = s.grants.lookups;
  assert.equal(await ask(s, fixtureRequest('end-of-message')), 'DUNNO');
  assert.equal(s.grants.lookups, before, 'END-OF-MESSAGE must not even look up a grant');
  // the engine logged the OK as a Postfix-shaped permit line, the DUNNO only at debug
  const permit = s.lines.find((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('NOQUEUE: permit: RCPT from unknown[127.0.0.7]: permit_pop_before_smtp user=alice'));
  assert.ok(permit, 'permit line');
  assert.equal(permit['level'], 'info');
  const dunno = s.lines.find((l) => l['action'] === 'dunno');
  assert.equal(dunno?.['level'], 'debug');
  assert.match(String(dunno?.['msg']), /^NOQUEUE: dunno: RCPT from unknown\[127\.0\.0\.7\]: end of list; from=<alice@sender\.example> to=<bob@remote\.example> proto=ESMTP helo=<client7\.example>$/);
});

test('many requests on one connection, unknown attributes ignored, pipelined requests answered in order', async () => {
  const s = await setup();
  s.grants.add('127.0.0.30', 'carol');
  const c = await RawClient.connect({ port: s.port });
  try {
    for (let i = 0; i < 50; i++) {
      const granted = i % 2 === 0;
      c.write(fixtureRequest('rcpt', { client_address: granted ? '127.0.0.30' : '127.0.0.31', client_port: String(40000 + i) }));
      assert.equal(await c.policyReply(), granted ? 'OK' : 'DUNNO', `request ${i}`);
    }
    // attributes a later Postfix adds (3.8: compatibility_level, mail_version, ...) and made-up ones
    c.write(fixtureRequest('rcpt', { client_address: '127.0.0.30', compatibility_level: '3.6', mail_version: '3.8.4', some_future_attribute: 'x=y=z' }));
    assert.equal(await c.policyReply(), 'OK');
    // three requests in one write: three replies, in order
    c.write(fixtureRequest('rcpt', { client_address: '127.0.0.31' }) + fixtureRequest('rcpt', { client_address: '127.0.0.30' }) + fixtureRequest('rcpt', { client_address: '127.0.0.31' }));
    assert.deepEqual([await c.policyReply(), await c.policyReply(), await c.policyReply()], ['DUNNO', 'OK', 'DUNNO']);
    // a request split into 1-byte writes
    const one = fixtureRequest('rcpt', { client_address: '127.0.0.30' });
    for (const ch of one) c.write(ch);
    assert.equal(await c.policyReply(), 'OK');
    assert.equal(c.closed, false);
  } finally {
    c.close();
  }
  assert.equal(s.svc.stats().malformed, 0);
});

test('replies carry the engine verdict: reject text, SASL sender-login check, MAIL stage', async () => {
  const s = await setup({
    restrictions: ['reject_sender_login_mismatch', 'permit_sasl_authenticated', 'permit_pop_before_smtp', 'reject_unauth_destination'],
    senderLoginMaps: ['inline:{ alice@sender.example=alice, { shared@sender.example = alice bob } }'],
  });
  // SASL user alice sending as her own address (captured request after a real SASL login)
  assert.equal(await ask(s, fixtureRequest('sasl')), 'OK');
  // SASL user bob using alice's address
  assert.equal(await ask(s, fixtureRequest('sasl', { sasl_username: 'bob' })), '553 5.7.1 not owned by user bob');
  assert.equal(await ask(s, fixtureRequest('sasl', { sasl_username: 'bob', sender: 'shared@sender.example' })), 'OK');
  // a POP-before-SMTP user is held to her addresses too (the grant records who logged in)
  s.grants.add('127.0.0.7', 'bob');
  assert.equal(await ask(s, fixtureRequest('rcpt')), '553 5.7.1 not owned by user bob');
  // a stranger: the relaygate list rejects (it ends with reject_unauth_destination here)
  assert.equal(await ask(s, fixtureRequest('rcpt', { client_address: '127.0.0.8', sender: 'x@elsewhere.example' })), '554 5.7.1 Relay access denied');
  assert.equal(await ask(s, fixtureRequest('rcpt', { client_address: '127.0.0.8', sender: 'x@elsewhere.example', recipient: 'root@local.example' })), 'DUNNO');
  // protocol_state=MAIL runs the list at MAIL: the sender check answers there already
  assert.equal(await ask(s, fixtureRequest('sasl', { protocol_state: 'MAIL', recipient: '', sasl_username: 'bob' })), '553 5.7.1 not owned by user bob');
  const line = s.lines.find((l) => String(l['msg']).startsWith('NOQUEUE: reject: MAIL from unknown[127.0.0.14]: 553 5.7.1'));
  assert.ok(line, 'MAIL-stage reject line');
});

test('store failure: tempfail_action (default DEFER_IF_PERMIT), a 4xx when configured, never OK', async () => {
  const s = await setup();
  s.grants.add('127.0.0.7', 'alice');
  s.grants.failing = true;
  assert.equal(await ask(s, fixtureRequest('rcpt')), 'DEFER_IF_PERMIT Service temporarily unavailable');
  const ev = await waitEvent(s.lines, 'policy_tempfail');
  assert.equal(ev['client_ip'], '127.0.0.7');
  assert.equal(s.svc.stats().tempfail, 1);
  const s2 = await setup({ tempfail: '451 4.3.0 relaygate: try again later' });
  s2.grants.add('127.0.0.7', 'alice');
  s2.grants.failing = true;
  assert.equal(await ask(s2, fixtureRequest('rcpt')), '451 4.3.0 relaygate: try again later');
  s2.grants.failing = false;
  assert.equal(await ask(s2, fixtureRequest('rcpt')), 'OK', 'recovers once the store answers again');
  // validation refuses permanent or permitting tempfail actions
  assert.equal(tempfailActionProblem('DEFER_IF_PERMIT Service temporarily unavailable'), undefined);
  assert.equal(tempfailActionProblem('DEFER'), undefined);
  assert.equal(tempfailActionProblem('450 4.7.1 later'), undefined);
  assert.match(tempfailActionProblem('OK') ?? '', /must be temporary/);
  assert.match(tempfailActionProblem('DUNNO') ?? '', /must be temporary/);
  assert.match(tempfailActionProblem('554 5.7.1 no') ?? '', /not a temporary code/);
  assert.match(tempfailActionProblem('REJECT broken') ?? '', /must be temporary/);
  assert.match(tempfailActionProblem('DEFER a\nb') ?? '', /one line/);
});

const MALFORMED: Array<[string, string | Buffer, RegExp]> = [
  ['oversize line', `request=smtpd_access_policy\nccert_subject=${'x'.repeat(20_000)}\n\n`, /line longer than 16384 bytes/],
  ['oversize line without a newline', `request=smtpd_access_policy\nhelo_name=${'y'.repeat(17_000)}`, /line longer than/],
  ['binary junk', Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x0a, 0x0a]), /control character 0x16/],
  ['NUL inside a value', `request=smtpd_access_policy\nclient_address=127.0.0.7\0.1\n\n`, /control character 0x00/],
  ['a thousand attributes', `request=smtpd_access_policy\n${Array.from({ length: 1000 }, (_, i) => `attr${i}=v`).join('\n')}\n\n`, new RegExp(`more than ${MAX_ATTRIBUTES} attributes`)],
  ['line without =', `request=smtpd_access_policy\nclient_address 127.0.0.7\n\n`, /line without "="/],
  ['bad attribute name', `request=smtpd_access_policy\nClient-Address=127.0.0.7\n\n`, /bad attribute name/],
  ['repeated attribute', `request=smtpd_access_policy\nclient_address=127.0.0.9\nclient_address=127.0.0.7\n\n`, /client_address repeated/],
  ['wrong request type', `request=junk_policy\nclient_address=127.0.0.7\n\n`, /unknown request type/],
  ['no request attribute', `client_address=127.0.0.7\n\n`, /without request=smtpd_access_policy/],
  ['empty request', `\n`, /empty request/],
  ['HTTP on the policy port', `GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`, /line without "="/],
];

test('malformed requests: logged, connection closed without a reply, the service unharmed', async () => {
  const s = await setup();
  s.grants.add('127.0.0.7', 'alice');
  for (const [name, bytes, reason] of MALFORMED) {
    const c = await RawClient.connect({ port: s.port });
    c.write(bytes);
    assert.equal(await c.waitClosed(3000), true, `${name}: connection not closed`);
    assert.equal(c.buf.length, 0, `${name}: got a reply ${JSON.stringify(c.buf.toString().slice(0, 80))}`);
    const ev = s.lines.filter((l) => l['event'] === 'policy_malformed').at(-1);
    assert.match(String(ev?.['reason']), reason, name);
    assert.equal(ev?.['level'], 'warn');
    assert.equal(await ask(s, fixtureRequest('rcpt')), 'OK', `${name}: service broken afterwards`);
  }
  assert.equal(s.svc.stats().malformed, MALFORMED.length);
  // the log line stays one line whatever the junk was
  for (const l of s.lines) assert.doesNotMatch(String(l['msg']), /[\n\r\0]/);
});

test('no empty line: EOF mid-request and a request never finished are logged and closed', async () => {
  const s = await setup({ requestTimeoutMs: 300 });
  const c = await RawClient.connect({ port: s.port });
  c.write('request=smtpd_access_policy\nclient_address=127.0.0.7\n');
  c.sock.end(); // half-close: Postfix crashed mid-write
  assert.equal(await c.waitClosed(), true);
  assert.match(String((await waitEvent(s.lines, 'policy_malformed'))['reason']), /closed in the middle of a request/);
  const c2 = await RawClient.connect({ port: s.port });
  c2.write('request=smtpd_access_policy\nclient_address=127.0.0.7\n');
  assert.equal(await c2.waitClosed(3000), true, 'stalled request not closed');
  assert.equal(c2.buf.length, 0);
  assert.ok(s.lines.some((l) => l['event'] === 'policy_malformed' && /not finished within 0\.3 s/.test(String(l['reason']))));
  // an idle connection between requests is fine
  const c3 = await RawClient.connect({ port: s.port });
  c3.write(fixtureRequest('rcpt'));
  assert.equal(await c3.policyReply(), 'DUNNO');
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(c3.closed, false, 'idle connection closed by the short request timeout');
  c3.close();
});

test('prepend_header: OK at RCPT, then PREPEND at DATA for the same message (instance) only', async () => {
  const s = await setup({ prepend: 'X-Relaygate-Trust' });
  s.grants.add('127.0.0.21', 'alice');
  const c = await RawClient.connect({ port: s.port });
  try {
    c.write(fixtureRequest('rcpt', { client_address: '127.0.0.21', instance: 'aa.1' }));
    assert.equal(await c.policyReply(), 'OK');
    c.write(fixtureRequest('rcpt', { client_address: '127.0.0.21', instance: 'aa.1', protocol_state: 'DATA', recipient: '', recipient_count: '1' }));
    const p = await c.policyReply();
    assert.match(p, /^PREPEND X-Relaygate-Trust: permit_pop_before_smtp client=\[127\.0\.0\.21\] user=alice service=pop3 expires=\d{4}-\d\d-\d\dT/);
    // the next message of another session: no OK at RCPT for it, no header
    c.write(fixtureRequest('rcpt', { client_address: '127.0.0.22', instance: 'bb.2' }));
    assert.equal(await c.policyReply(), 'DUNNO');
    c.write(fixtureRequest('rcpt', { client_address: '127.0.0.22', instance: 'bb.2', protocol_state: 'DATA', recipient: '' }));
    assert.equal(await c.policyReply(), 'DUNNO');
  } finally {
    c.close();
  }
});

test('who may connect: TCP peers outside clients are refused; unix socket with mode, stale file replaced, removed at close', async () => {
  const s = await setup({ clients: ['127.0.0.1/32'] });
  const stranger = await RawClient.connect({ port: s.port, localAddress: '127.0.0.5' });
  stranger.write(fixtureRequest('rcpt'));
  assert.equal(await stranger.waitClosed(), true);
  assert.equal(stranger.buf.length, 0);
  assert.equal((await waitEvent(s.lines, 'policy_client_refused'))['client'] !== undefined, true);
  const friend = await RawClient.connect({ port: s.port, localAddress: '127.0.0.1' });
  friend.write(fixtureRequest('rcpt'));
  assert.equal(await friend.policyReply(), 'DUNNO');
  friend.close();

  // a stale socket file from a crashed run is replaced
  const path = join(tmp, 'policy.sock');
  // a process that listens there and is killed with SIGKILL leaves its socket file behind
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((r, j) => {
    const t = setTimeout(() => j(new Error('child listener did not start')), 5000);
    child.stdout.once('data', () => {
      clearTimeout(t);
      r();
    });
  });
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  assert.ok((await stat(path)).isSocket(), 'the stale socket file is there');
  await assert.rejects(RawClient.connect({ path }), /ECONNREFUSED/);
  const u = await setup({ listen: path });
  assert.equal(u.svc.address, `unix:${path}`);
  assert.equal((await stat(path)).mode & 0o777, 0o660);
  u.grants.add('127.0.0.7', 'alice');
  const c = await RawClient.connect({ path });
  c.write(fixtureRequest('rcpt'));
  assert.equal(await c.policyReply(), 'OK');
  c.close();
  // a path in use is refused with a clear error
  await assert.rejects(setup({ listen: path }), /policy: cannot listen on unix:.*address already in use/);
  // a path that is not a socket is refused too
  const file = join(tmp, 'not-a-socket');
  await writeFile(file, 'x');
  await assert.rejects(setup({ listen: file }), /exists and is not a socket/);
  await u.svc.close(0);
  await assert.rejects(stat(path), /ENOENT/);
});

test('parser unit: CRLF tolerated, values keep "=" and UTF-8, only used attributes kept', () => {
  const p = new PolicyRequestParser();
  const r = p.feed(Buffer.from('request=smtpd_access_policy\r\nsender=j\u00f6rg@b\u00fccher.example\nhelo_name=a=b\n__proto__=x\nccert_subject=CN=x\nccert_subject=twice, unused: ignored\n\n'));
  assert.equal(r.error, undefined);
  assert.equal(r.requests.length, 1);
  const a = r.requests[0]!;
  assert.equal(a.sender, 'j\u00f6rg@b\u00fccher.example');
  assert.equal(a.helo_name, 'a=b');
  // only the attributes relaygate reads are kept; __proto__ and the rest reach nothing
  assert.deepEqual(Object.entries(a).filter(([, v]) => v !== undefined).map(([k]) => k).sort(), ['helo_name', 'request', 'sender']);
  assert.equal(Object.getPrototypeOf(Object.getPrototypeOf(a)), Object.prototype);
  assert.equal(Object.hasOwn(a, '__proto__'), false);
  assert.equal(Object.hasOwn(a, 'ccert_subject'), false);
  assert.equal(p.midRequest, false);
  const r2 = p.feed(Buffer.from('request=smtpd_access_policy\n'));
  assert.equal(r2.requests.length, 0);
  assert.equal(p.midRequest, true);
  // a UTF-8 character split across two chunks
  const q = new PolicyRequestParser();
  const bytes = Buffer.from('request=smtpd_access_policy\nsender=\u00e9@x.example\n\n');
  const cut = bytes.indexOf(0xc3) + 1;
  assert.equal(q.feed(bytes.subarray(0, cut)).requests.length, 0);
  assert.equal(q.feed(bytes.subarray(cut)).requests[0]?.sender, '\u00e9@x.example');
});

test('postfixText: the engine head Postfix adds itself is left out, other texts are kept', () => {
  assert.equal(postfixText('<bob@remote.example>: Relay access denied'), 'Relay access denied');
  assert.equal(postfixText('<alice@example.com>: Sender address rejected: not owned by user bob'), 'not owned by user bob');
  assert.equal(postfixText('<unknown[192.0.2.9]>: Client host rejected: Access denied'), 'Access denied');
  assert.equal(postfixText('Error: internal error'), 'Error: internal error');
  assert.equal(postfixText('<x>: '), '<x>: ');
});
