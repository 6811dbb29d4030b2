// The message body through the gateway: SMTP smuggling sequences (bare LF / bare CR) refused with 550 5.5.2
// by default or normalized to CRLF, never reaching the upstream in a non-canonical form; dot-stuffing kept
// transparent; the size and recipient limits; the Received: header (RFC 3848 `with`, Postfix's
// `(Authenticated sender: ...)`, hostile HELO names); LineEndingGuard across every chunk boundary.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHarness, message, type Harness } from '../../helpers/smtp-gateway.ts';
import { SmtpClient, plain } from '../../helpers/smtp-client.ts';
import { LineEndingGuard, receivedHeader } from '../../../src/frontends/smtp/index.ts';

/** Sequences that some MTA somewhere treats as the end of DATA; each followed by a smuggled transaction. */
const SMUGGLE = ['\n.\n', '\r.\n', '\n.\r\n', '\r\n.\r', '\r.\r', '\n.\r', '\r\n.\n', '\n\r.\r\n'];
const SMUGGLED = 'MAIL FROM:<evil@remote.example>\r\nRCPT TO:<victim@remote.example>\r\nDATA\r\nSubject: smuggled\r\n\r\nowned\r\n';

/** Every byte of a message is CRLF-canonical: no CR without LF after it, no LF without CR before it. */
function canonical(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) {
    if (b[i] === 0x0d && b[i + 1] !== 0x0a) return false;
    if (b[i] === 0x0a && b[i - 1] !== 0x0d) return false;
  }
  return true;
}

async function session(h: Harness, ip: string): Promise<SmtpClient> {
  const c = await SmtpClient.connect({ port: h.port('smtp'), localAddress: ip });
  assert.equal((await c.cmd('EHLO data.test')).code, 250);
  return c;
}

/** MAIL, RCPT, DATA, then `raw` (which must end the data itself); returns the reply to the end of data. */
async function send(c: SmtpClient, raw: string, from = 'a@local.example', to = 'b@local.example') {
  assert.equal((await c.cmd(`MAIL FROM:<${from}>`)).code, 250);
  assert.equal((await c.cmd(`RCPT TO:<${to}>`)).code, 250);
  assert.equal((await c.cmd('DATA')).code, 354);
  c.write(raw);
  return c.read();
}

describeModes();

function describeModes(): void {
  let h: Harness;
  let n: Harness;
  before(async () => {
    h = await startHarness({ roles: ['smtp'], smtp: 'recipient_limit = 3\nmessage_size_limit = 4000\nauthenticated_header = true' });
    n = await startHarness({ roles: ['smtp'], smtp: 'bare_newline = "normalize"' });
  });
  after(async () => {
    await h?.close();
    await n?.close();
  });

  for (const seq of SMUGGLE) {
    test(`smuggling ${JSON.stringify(seq)}: refused with 550 5.5.2 (default), nothing upstream, the session goes on`, async () => {
      const c = await session(h, '127.0.0.70');
      const before = h.sink.messages.length;
      const r = await send(c, `Subject: smuggle\r\n\r\nhello${seq}${SMUGGLED}.\r\n`);
      assert.match(r.raw, /^550 5\.5\.2 Error: bare (LF|CR) received in message data; lines must end with CRLF$/);
      // exactly one reply for the message: the smuggled commands were data, not commands
      const next = await c.cmd('NOOP');
      assert.equal(next.raw, '250 2.0.0 OK');
      const ok = await send(c, message('after-smuggle') + '.\r\n');
      assert.equal(ok.code, 250, 'the next transaction works');
      await c.quit();
      const got = await h.sink.waitFor(before + 1);
      assert.equal(got.length, before + 1, 'only the clean message arrived');
      assert.ok(!got.some((m) => m.data.includes('smuggled') || m.from === 'evil@remote.example'));
    });

    test(`smuggling ${JSON.stringify(seq)} with bare_newline = "normalize": one message, CRLF only, smuggled lines stay body`, async () => {
      const c = await session(n, '127.0.0.71');
      const before = n.sink.messages.length;
      const r = await send(c, `Subject: smuggle-normalized\r\n\r\nhello${seq}${SMUGGLED}.\r\n`);
      assert.equal(r.code, 250, r.raw);
      await c.quit();
      const got = await n.sink.waitFor(before + 1);
      assert.equal(got.length, before + 1);
      const m = got.at(-1)!;
      assert.ok(canonical(m.data), `canonical: ${JSON.stringify(m.data.toString())}`);
      assert.match(m.data.toString(), /MAIL FROM:<evil@remote\.example>\r\n/, 'the smuggled text arrived as body text');
      assert.equal(m.from, 'a@local.example');
      assert.ok(!n.sink.messages.some((x) => x.from === 'evil@remote.example'));
    });
  }

  test('dot-stuffing is transparent end to end (a body line that is a single dot, lines starting with dots)', async () => {
    const c = await session(h, '127.0.0.72');
    const r = await send(c, 'Subject: dots\r\n\r\nbefore\r\n..\r\n...two\r\n.x\r\nafter\r\n.\r\n');
    assert.equal(r.code, 250, r.raw);
    await c.quit();
    const m = h.sink.messages.find((x) => x.data.includes('Subject: dots'))!;
    // `..` is an escaped `.`; smtp-server (unlike Postfix) keeps the dot of `.x`, which the client should have
    // sent as `..x` — either way the upstream receives exactly what the gateway received
    assert.match(m.data.toString(), /\r\nbefore\r\n\.\r\n\.\.two\r\n\.x\r\nafter\r\n$/);
  });

  test('message_size_limit: SIZE= above the limit is refused at MAIL; an oversized message gets 552 5.3.4 and never reaches the upstream', async () => {
    const c = await session(h, '127.0.0.73');
    const big = await c.cmd('MAIL FROM:<a@local.example> SIZE=5000');
    assert.equal(big.code, 552, big.raw);
    const before = h.sink.messages.length;
    const r = await send(c, `Subject: big\r\n\r\n${'x'.repeat(70)}\r\n`.repeat(80) + '.\r\n');
    assert.match(r.raw, /^552 5\.3\.4 /);
    const ok = await send(c, message('small-after-big') + '.\r\n');
    assert.equal(ok.code, 250);
    await c.quit();
    await h.sink.waitFor(before + 1);
    assert.ok(!h.sink.messages.some((m) => m.data.includes('Subject: big')));
    await h.waitLog(/status=rejected \(552 5\.3\.4 Error: message exceeds fixed maximum message size\)$/);
  });

  test('recipient_limit: the 4th recipient gets 452 4.5.3, the message goes to the first three', async () => {
    const c = await session(h, '127.0.0.74');
    await c.cmd('MAIL FROM:<a@local.example>');
    for (let i = 1; i <= 3; i++) assert.equal((await c.cmd(`RCPT TO:<r${i}@local.example>`)).code, 250);
    const r4 = await c.cmd('RCPT TO:<r4@local.example>');
    assert.match(r4.raw, /^452 4\.5\.3 /);
    assert.equal((await c.cmd('DATA')).code, 354);
    c.write(message('four-rcpts') + '.\r\n');
    assert.equal((await c.read()).code, 250);
    await c.quit();
    const m = h.sink.messages.find((x) => x.data.includes('Subject: four-rcpts'))!;
    assert.deepEqual(m.to, ['r1@local.example', 'r2@local.example', 'r3@local.example']);
    assert.doesNotMatch(m.data.toString(), /\tfor </, 'no `for <rcpt>` with several recipients');
  });

  test('Received: header first, ESMTPA with (Authenticated sender: ...) for a SASL client, the queue id in the log', async () => {
    const c = await session(h, '127.0.0.75');
    assert.equal((await c.cmd(`AUTH PLAIN ${plain('', 'alice', 'alice-secret')}`)).code, 235);
    const r = await send(c, message('received-auth') + '.\r\n', 'alice@local.example', 'bob@remote.example');
    assert.equal(r.code, 250);
    await c.quit();
    const m = h.sink.messages.find((x) => x.data.includes('Subject: received-auth'))!;
    const text = m.data.toString();
    const re = /^Received: from data\.test \(unknown \[127\.0\.0\.75\]\)\r\n\t\(Authenticated sender: alice\)\r\n\tby gw\.test \(relaygate\) with ESMTPA id ([0-9A-F]{10})\r\n\tfor <bob@remote\.example>; \w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d \+0000 \(UTC\)\r\nFrom: /;
    const hit = re.exec(text);
    assert.ok(hit, text.slice(0, 400));
    await h.waitLog(new RegExp(`^${hit[1]}: client=unknown\\[127\\.0\\.0\\.75\\], sasl_method=PLAIN, sasl_username=alice, `));
  });

  test('8BITMIME bodies are forwarded byte for byte', async () => {
    const c = await session(h, '127.0.0.76');
    assert.equal((await c.cmd('MAIL FROM:<a@local.example> BODY=8BITMIME')).code, 250);
    await c.cmd('RCPT TO:<b@local.example>');
    await c.cmd('DATA');
    const body = Buffer.concat([Buffer.from('Subject: eight\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n'), Buffer.from('Grüße — ünïcödé\r\n', 'utf8'), Buffer.from('.\r\n')]);
    c.write(body);
    assert.equal((await c.read()).code, 250);
    await c.quit();
    const m = h.sink.messages.find((x) => x.data.includes('Subject: eight'))!;
    assert.ok(m.data.includes(Buffer.from('Grüße — ünïcödé\r\n', 'utf8')));
  });
}

test('LineEndingGuard: every chunk split of canonical input passes unchanged; every split of a bare CR/LF is caught', () => {
  const inputs: Array<{ text: string; reject: boolean; normalized: string }> = [
    { text: 'a\r\nb\r\n', reject: false, normalized: 'a\r\nb\r\n' },
    { text: '\r\n\r\n\r\n', reject: false, normalized: '\r\n\r\n\r\n' },
    { text: 'a\nb\r\n', reject: true, normalized: 'a\r\nb\r\n' },
    { text: 'a\rb\r\n', reject: true, normalized: 'a\r\nb\r\n' },
    { text: 'a\r\r\n', reject: true, normalized: 'a\r\n\r\n' },
    { text: 'a\n\r\n', reject: true, normalized: 'a\r\n\r\n' },
    { text: 'end\r', reject: true, normalized: 'end\r\n' },
    { text: '\n.\n', reject: true, normalized: '\r\n.\r\n' },
    { text: '\r.\r', reject: true, normalized: '\r\n.\r\n' },
  ];
  for (const inp of inputs) {
    const bytes = Buffer.from(inp.text, 'latin1');
    for (let a = 0; a <= bytes.length; a++) {
      for (let b = a; b <= bytes.length; b++) {
        const chunks = [bytes.subarray(0, a), bytes.subarray(a, b), bytes.subarray(b)];
        const rej = new LineEndingGuard('reject');
        const outR = Buffer.concat([...chunks.map((c) => rej.push(c)), rej.end()]);
        assert.equal(rej.violation !== undefined, inp.reject, `${JSON.stringify(inp.text)} split ${a}/${b}`);
        if (!inp.reject) assert.equal(outR.toString('latin1'), inp.text);
        else assert.ok(canonical(outR), 'what was let through before the violation is canonical');
        const nor = new LineEndingGuard('normalize');
        const outN = Buffer.concat([...chunks.map((c) => nor.push(c)), nor.end()]);
        assert.equal(nor.violation, undefined);
        assert.equal(outN.toString('latin1'), inp.normalized, `normalize ${JSON.stringify(inp.text)} split ${a}/${b}`);
      }
    }
  }
});

test('receivedHeader: hostile HELO, user and recipient cannot add header lines or break the structure', () => {
  const h = receivedHeader({
    helo: 'evil)\r\nX-Injected: yes (',
    clientName: undefined,
    clientIp: '2001:db8::1',
    by: 'gw.test',
    with: 'ESMTPSA',
    id: 'ABCDEF0123',
    authenticatedSender: 'al)ice\nX-Evil: 1',
    tls: { version: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' },
    singleRecipient: 'bob@x>\r\nBcc: z',
    date: new Date(Date.UTC(2026, 10, 21, 10, 0, 0)),
  }).toString('latin1');
  const lines = h.split('\r\n');
  assert.equal(lines.at(-1), '');
  assert.ok(lines.slice(1, -1).every((l) => l.startsWith('\t')), h);
  assert.ok(!/\n(?!\t)/.test(h.slice(0, -2).replace(/\r\n\t/g, '')), h);
  assert.equal(
    h,
    'Received: from evil???X-Injected:?yes?? (unknown [IPv6:2001:db8::1])\r\n' +
      '\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n' +
      '\t(Authenticated sender: al?ice?X-Evil:?1)\r\n' +
      '\tby gw.test (relaygate) with ESMTPSA id ABCDEF0123\r\n' +
      '\tfor <bob@x???Bcc:?z>; Sat, 21 Nov 2026 10:00:00 +0000 (UTC)\r\n',
  );
});
