// pop_before_smtp_sunset: the policy's matching rules and dates, and the engine across the date with an
// injected clock — before it a grant permits with a notice (warn line, header), from it the grant no longer
// permits a remote recipient and the refusal says to turn on SMTP authentication, while local recipients and
// SASL users are unaffected. Also the usage notes the engine hands to the usage log.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createEngine, type EngineOptions } from '../../src/engine/index.ts';
import { SunsetPolicy, sunsetDay, sunsetProblems } from '../../src/engine/sunset.ts';
import type { UsageEvent } from '../../src/engine/types.ts';
import { CidrSet } from '../../src/net/index.ts';
import { createLogger, silentLogger } from '../../src/log/logger.ts';
import type { Grant } from '../../src/store/types.ts';

const DAY = 86_400_000;
const SUNSET = Date.UTC(2027, 2, 1); // 2027-03-01 00:00 UTC

function grant(ip: string, user: string | null, at: number): Grant {
  return { ip, user, service: 'pop3', source: 'dovecot', firstSeen: at, lastSeen: at, expires: at + 1_800_000, count: 1 };
}

describe('SunsetPolicy', () => {
  test('dates: YYYY-MM-DD, Date objects (TOML dates), 00:00 UTC; impossible days refused', () => {
    assert.equal(sunsetDay('2027-03-01'), SUNSET);
    assert.equal(sunsetDay(new Date('2027-03-01T00:00:00Z')), SUNSET);
    assert.equal(sunsetDay('2027-02-30'), undefined);
    assert.equal(sunsetDay('next year'), undefined);
    assert.equal(sunsetDay(''), undefined);
    assert.deepEqual(sunsetProblems({ entries: { 'example.com': '2027-03-01' } }), []);
    const p = sunsetProblems({ entries: { 'example.com': '2027-13-01', 'a b': '2027-01-01' }, header: 'Bad: name', text: 'two\nlines' });
    assert.equal(p.length, 4, p.join('\n'));
    assert.ok(p.some((l) => l.includes('pop_before_smtp_sunset.example.com') && l.includes('2027-03-01')));
    assert.throws(() => new SunsetPolicy({ entries: { x: 'soon' } }), /not a date/);
  });

  test('most specific first: login, sender address, login domain, sender domain, "*"', () => {
    const p = new SunsetPolicy({
      entries: { 'alice@example.com': '2027-01-01', bob: '2027-02-01', 'example.com': '2027-03-01', '@example.org': '2027-04-01', '*': '2028-01-01' },
    });
    assert.equal(p.match('Alice@Example.com', undefined)?.date, '2027-01-01');
    assert.equal(p.match('bob', 'bob@elsewhere.net')?.date, '2027-02-01');
    assert.equal(p.match('carol@example.com', undefined)?.date, '2027-03-01');
    assert.equal(p.match('carol', 'carol@example.org')?.date, '2027-04-01', '@domain is a domain key, matched via the sender');
    assert.equal(p.match('dave', 'alice@example.com')?.date, '2027-01-01', 'an address key matches the sender too');
    assert.equal(p.match(null, undefined)?.date, '2028-01-01', '"*" catches the rest, DRAC grants without a user included');
    const none = new SunsetPolicy({ entries: { 'example.com': '2027-03-01' } });
    assert.equal(none.match('carol', 'carol@other.net'), undefined);
    assert.equal(none.match('x@sub.example.com', undefined), undefined, 'a domain key is that domain, not its subdomains');
  });
});

describe('the engine across the sunset date (injected clock)', () => {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const notes: UsageEvent[] = [];
  let now = SUNSET - DAY;
  const grants = new Map<string, Grant>();
  const opts = (over: Partial<EngineOptions> = {}): EngineOptions => ({
    relayRestrictions: ['permit_mynetworks', 'permit_sasl_authenticated', 'permit_pop_before_smtp', 'reject_unauth_destination'],
    senderRestrictions: [],
    mynetworks: new CidrSet(['127.0.0.0/8']),
    mydestination: ['example.com'],
    relayDomains: [],
    senderLoginMaps: [],
    grants: { lookup: async (ip) => grants.get(ip) },
    clock: () => now,
    logger: createLogger({ level: 'info', destination: sink }),
    sunset: new SunsetPolicy({ entries: { 'example.com': '2027-03-01' }, header: 'X-Relay-Notice' }),
    usage: { note: (e) => notes.push(e) },
    ...over,
  });

  test('the day before: permitted on the grant, with a warning line and the header', async () => {
    grants.set('192.0.2.7', grant('192.0.2.7', 'alice@example.com', now));
    const e = await createEngine(opts());
    lines.length = 0;
    const d = await e.decide({ stage: 'rcpt', clientIp: '192.0.2.7', sender: 'alice@example.com', recipient: 'bob@remote.example' });
    assert.equal(d.action, 'permit');
    assert.equal(d.decidedBy, 'permit_pop_before_smtp');
    assert.deepEqual(d.sunset, { key: 'example.com', date: '2027-03-01', state: 'notice' });
    assert.equal(d.headers?.length, 1);
    assert.match(d.headers![0]!, /^X-Relay-Notice: POP-before-SMTP relaying ends on 2027-03-01 for example\.com/);
    const warn = lines.find((l) => l.action === 'warn');
    assert.ok(warn, JSON.stringify(lines));
    assert.match(String(warn.msg), /ends on 2027-03-01/);
    await e.close();
  });

  test('from the date: a remote recipient is refused with the sunset text; the grant no longer permits', async () => {
    now = SUNSET + 60_000;
    grants.set('192.0.2.7', grant('192.0.2.7', 'alice@example.com', now));
    const e = await createEngine(opts());
    const d = await e.decide({ stage: 'rcpt', clientIp: '192.0.2.7', sender: 'alice@example.com', recipient: 'bob@remote.example' });
    assert.equal(d.action, 'reject');
    assert.equal(d.code, 550);
    assert.equal(d.dsn, '5.7.1');
    assert.match(d.text!, /ended on 2027-03-01: turn on SMTP authentication/);
    assert.equal(d.headers, undefined);
    assert.deepEqual(d.sunset, { key: 'example.com', date: '2027-03-01', state: 'ended' });
    const popTrace = d.trace.find((t) => t.restriction === 'permit_pop_before_smtp');
    assert.equal(popTrace?.result, 'DUNNO');
    // the same client, a local recipient: still delivered (the sunset takes away relaying only)
    const local = await e.decide({ stage: 'rcpt', clientIp: '192.0.2.7', sender: 'alice@example.com', recipient: 'carol@example.com' });
    assert.equal(local.action, 'permit');
    // a SASL user from the same address relays as before
    const sasl = await e.decide({ stage: 'rcpt', clientIp: '192.0.2.7', saslUser: 'alice@example.com', sender: 'alice@example.com', recipient: 'bob@remote.example' });
    assert.equal(sasl.action, 'permit');
    assert.equal(sasl.decidedBy, 'permit_sasl_authenticated');
    // a user of a domain without a sunset still relays on the grant
    grants.set('192.0.2.8', grant('192.0.2.8', 'dave@other.net', now));
    const other = await e.decide({ stage: 'rcpt', clientIp: '192.0.2.8', sender: 'dave@other.net', recipient: 'bob@remote.example' });
    assert.equal(other.action, 'permit');
    assert.equal(other.sunset, undefined);
    // a client without a grant still gets Postfix's words
    const stranger = await e.decide({ stage: 'rcpt', clientIp: '198.51.100.9', sender: 'x@example.com', recipient: 'bob@remote.example' });
    assert.equal(stranger.code, 554);
    assert.match(stranger.text!, /Relay access denied/);
    await e.close();
  });

  test('usage notes: the method and the user of every permitted RCPT, nothing for refusals or local delivery', async () => {
    notes.length = 0;
    now = SUNSET - DAY;
    grants.set('192.0.2.9', grant('192.0.2.9', 'erin', now));
    grants.set('192.0.2.10', grant('192.0.2.10', null, now));
    const e = await createEngine(opts({ sunset: undefined }));
    await e.decide({ stage: 'rcpt', clientIp: '192.0.2.9', sender: 'erin@example.net', recipient: 'x@remote.example' });
    await e.decide({ stage: 'rcpt', clientIp: '192.0.2.10', sender: 'drac@example.net', recipient: 'x@remote.example' });
    await e.decide({ stage: 'rcpt', clientIp: '198.51.100.1', saslUser: 'frank', sender: 'frank@example.net', recipient: 'x@remote.example' });
    await e.decide({ stage: 'rcpt', clientIp: '127.0.0.5', sender: 'app@example.net', recipient: 'x@remote.example' });
    await e.decide({ stage: 'rcpt', clientIp: '198.51.100.2', sender: 'nobody@example.net', recipient: 'x@remote.example' }); // refused
    await e.decide({ stage: 'mail', clientIp: '192.0.2.9', sender: 'erin@example.net' }); // MAIL stage: not a relay
    assert.deepEqual(
      notes.map((n) => [n.method, n.user, n.ip, n.at]),
      [
        ['pop', 'erin', '192.0.2.9', now],
        ['pop', '<drac@example.net>', '192.0.2.10', now],
        ['sasl', 'frank', '198.51.100.1', now],
        ['mynetworks', '<app@example.net>', '127.0.0.5', now],
      ],
    );
    await e.close();
  });

  test('a usage sink that throws never changes the decision', async () => {
    const e = await createEngine(opts({ usage: { note: () => { throw new Error('disk full'); } }, logger: silentLogger(), sunset: undefined }));
    const d = await e.decide({ stage: 'rcpt', clientIp: '192.0.2.9', sender: 'erin@example.net', recipient: 'x@remote.example' });
    assert.equal(d.action, 'permit');
    await e.close();
  });
});
