// LineParser, the line prefixes and compileCustomPattern, table-driven: BSD syslog year inference, RFC 3339
// offsets, Dovecot log_path (new and 1.x), TAI64N, ident filtering and override, untrusted usernames, two-line
// pairing by ident[pid] with its 10-minute limit and size bound, and the validation of operators' patterns.
// Security: these are the rules that keep a log line from faking a grant; each has a case that must yield nothing.

process.env.TZ = 'UTC'; // BSD and log_path stamps are local time: pin it so the expected instants hold anywhere

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LineParser, MAX_USER, compileCustomPattern, type ParseResult } from '../../src/sources/parser.ts';
import { PREFIXES, bsdTime, tai64nTime } from '../../src/sources/prefix.ts';
import { FORMATS, getFormat } from '../../src/sources/formats/index.ts';
import type { LogFormat } from '../../src/sources/formats/index.ts';
import { RelaygateError } from '../../src/errors.ts';

const T = (iso: string): number => Date.parse(iso);
const NOW = T('2026-11-21T20:00:00Z');
const DOVECOT_MSG = 'pop3-login: Login: user=<alice>, method=PLAIN, rip=192.0.2.7, lip=198.51.100.5, mpid=4711, session=<Ab12Cd34>';

function parser(format: string, prefix: string, idents?: readonly string[]): LineParser {
  return new LineParser({ format: getFormat(format), prefix, idents });
}

function login(r: ParseResult): Extract<ParseResult, { kind: 'login' }> {
  assert.equal(r.kind, 'login', `want a login, got ${JSON.stringify(r)}`);
  return r as Extract<ParseResult, { kind: 'login' }>;
}

describe('BSD syslog prefix: the year is inferred', () => {
  const cases: [string, string, string, string][] = [
    // what, line stamp, now, expected instant
    ['same day', 'Nov 21 19:37:48', '2026-11-21T20:00:00Z', '2026-11-21T19:37:48Z'],
    ['a December line read in January is last year', 'Dec 31 23:59:59', '2027-01-02T00:00:00Z', '2026-12-31T23:59:59Z'],
    ['a January line read in January is this year', 'Jan  2 00:00:01', '2027-01-02T08:00:00Z', '2027-01-02T00:00:01Z'],
    ['less than a day ahead (clock skew) stays this year', 'Nov 22 10:00:00', '2026-11-21T20:00:00Z', '2026-11-22T10:00:00Z'],
    ['more than a day ahead is last year', 'Nov 23 10:00:00', '2026-11-21T20:00:00Z', '2025-11-23T10:00:00Z'],
    ['a space-padded day', 'Mar  1 00:00:00', '2026-11-21T20:00:00Z', '2026-03-01T00:00:00Z'],
  ];
  for (const [what, stamp, now, want] of cases) {
    test(what, () => {
      const r = login(parser('dovecot', 'syslog').parse(`${stamp} mx dovecot: ${DOVECOT_MSG}`, T(now)));
      assert.equal(r.time, T(want));
    });
  }

  test('bsdTime refuses a stamp that is no date instead of rolling it over', () => {
    for (const [mon, day, hh, mm, ss] of [
      ['Foo', '1', '00', '00', '00'],
      ['Nov', '32', '00', '00', '00'],
      ['Nov', '0', '00', '00', '00'],
      ['Feb', '30', '00', '00', '00'],
      ['Nov', '21', '24', '00', '00'],
      ['Nov', '21', '23', '60', '00'],
    ]) {
      assert.equal(bsdTime(mon!, day!, hh!, mm!, ss!, NOW), undefined, `${mon} ${day} ${hh}:${mm}:${ss}`);
    }
    assert.equal(bsdTime('Feb', '29', '12', '00', '00', T('2028-03-01T00:00:00Z')), T('2028-02-29T12:00:00Z'));
  });

  test('a line without the configured prefix yields nothing', () => {
    for (const line of [
      DOVECOT_MSG,
      `Foo 21 19:37:48 mx dovecot: ${DOVECOT_MSG}`,
      `Feb 30 19:37:48 mx dovecot: ${DOVECOT_MSG}`,
      `2026-11-21T19:37:48Z mx dovecot: ${DOVECOT_MSG}`,
    ]) {
      assert.deepEqual(parser('dovecot', 'syslog').parse(line, NOW), { kind: 'none', reason: 'prefix' }, line);
    }
  });

  test('the tag gives ident and pid', () => {
    const p = PREFIXES.syslog!.parse(`Nov 21 19:42:03 mx cyrus/imap[24586]: login: [127.0.0.7] x`, NOW);
    assert.equal(p?.ident, 'cyrus/imap');
    assert.equal(p?.pid, 24586);
    assert.equal(p?.host, 'mx');
    assert.equal(p?.message, 'login: [127.0.0.7] x');
  });
});

describe('RFC 3339 prefix: offsets are honoured', () => {
  const cases: [string, string][] = [
    ['2026-11-21T16:33:38.969450+00:00', '2026-11-21T16:33:38.969Z'],
    ['2026-11-21T17:33:38.969450+01:00', '2026-11-21T16:33:38.969Z'],
    ['2026-11-21T11:03:38-05:30', '2026-11-21T16:33:38Z'],
    ['2026-11-21T17:33:38+0100', '2026-11-21T16:33:38Z'],
    ['2026-11-21T16:33:38Z', '2026-11-21T16:33:38Z'],
    ['2026-11-21 16:33:38Z', '2026-11-21T16:33:38Z'],
  ];
  for (const [stamp, want] of cases) {
    test(stamp, () => {
      const r = login(parser('dovecot', 'rfc3339').parse(`${stamp} mx dovecot[3336]: ${DOVECOT_MSG}`, NOW));
      assert.equal(r.time, T(want));
      assert.equal(r.ip, '192.0.2.7');
    });
  }

  test('a stamp that is no date is no prefix', () => {
    assert.deepEqual(parser('dovecot', 'rfc3339').parse(`2026-13-45T16:33:38Z mx dovecot: ${DOVECOT_MSG}`, NOW), { kind: 'none', reason: 'prefix' });
  });
});

describe('Dovecot log_path prefixes', () => {
  test('current log_path: no host or ident, the level word after the process', () => {
    const r = login(parser('dovecot', 'logpath').parse('Nov 21 16:31:28 pop3-login: Info: Login: user=<alice>, method=PLAIN, rip=127.0.0.7, lip=127.0.0.1, mpid=30817, session=<gJ6H5MtgPtB/AAAH>', NOW));
    assert.deepEqual([r.ip, r.user, r.service, r.session, r.time], ['127.0.0.7', 'alice', 'pop3', 'gJ6H5MtgPtB/AAAH', T('2026-11-21T16:31:28Z')]);
  });

  test('Dovecot 1.x log_path: `dovecot: DATE TIME Info: ` and ::ffff: addresses', () => {
    const r = login(parser('dovecot', 'logpath').parse('dovecot: 2006-02-20 10:15:02 Info: pop3-login: Login: user=<alice>, method=PLAIN, rip=::ffff:192.0.2.7, lip=::ffff:198.51.100.5, secured', NOW));
    assert.deepEqual([r.ip, r.user, r.service, r.session, r.time], ['192.0.2.7', 'alice', 'pop3', undefined, T('2006-02-20T10:15:02Z')]);
  });

  test('a syslog line read with the log_path prefix matches nothing', () => {
    assert.equal(parser('dovecot', 'logpath').parse(`Nov 21 19:37:48 mx dovecot: ${DOVECOT_MSG}`, NOW).kind, 'none');
  });
});

describe('TAI64N prefix', () => {
  test('the label is TAI: 10 s ahead of UTC, nanoseconds to ms', () => {
    // 0x4c91b044 = 1284616260 s TAI, 0x077a9e94 = 125476500 ns
    assert.equal(tai64nTime('400000004c91b044077a9e94'), (1284616260 - 10) * 1000 + 125);
    assert.equal(tai64nTime('3fffffffffffffff00000000'), undefined);
    assert.equal(tai64nTime('400000004c91b044ffffffff'), undefined);
  });

  test('with a tag (ident and pid) and without', () => {
    const p = parser('popa3d', 'tai64n');
    assert.deepEqual(p.parse('@400000004c91b044077a9e94 popa3d[990]: Session from 192.0.2.7', NOW), { kind: 'none', reason: 'pending', pattern: 'popa3d-session' });
    const r = login(p.parse('@400000004c91b045077a9e94 popa3d[990]: Authentication passed for alice', NOW));
    assert.deepEqual([r.ip, r.user, r.time], ['192.0.2.7', 'alice', (1284616261 - 10) * 1000 + 125]);
    const c = login(parser('courier', 'tai64n').parse('@400000004c91b044077a9e94 LOGIN, user=alice, ip=[::ffff:192.0.2.8], port=[1]', NOW));
    assert.equal(c.ip, '192.0.2.8');
    assert.deepEqual(parser('courier', 'tai64n').parse('@400000004c91b044ffffffff LOGIN, user=alice, ip=[192.0.2.8], port=[1]', NOW), { kind: 'none', reason: 'prefix' });
  });
});

describe('idents', () => {
  const line = (ident: string): string => `Nov 21 19:37:48 mx ${ident}: ${DOVECOT_MSG}`;
  const cases: [string, string, readonly string[] | undefined, string][] = [
    ['the format default', 'dovecot', undefined, 'login'],
    ['with a pid', 'dovecot[812]', undefined, 'login'],
    ['another program', 'postfix/smtpd[4242]', undefined, 'ident'],
    ['another instance_name is not the default', 'dovecot-rg', undefined, 'ident'],
    ['an override admits it', 'dovecot-rg', ['dovecot-rg'], 'login'],
    ['an override replaces the default', 'dovecot', ['dovecot-rg'], 'ident'],
    ['idents are case-sensitive', 'Dovecot', undefined, 'ident'],
  ];
  for (const [what, ident, idents, want] of cases) {
    test(what, () => {
      const r = parser('dovecot', 'syslog', idents).parse(line(ident), NOW);
      assert.equal(r.kind === 'login' ? 'login' : r.kind === 'none' ? r.reason : r.kind, want);
    });
  }

  test('records with separate fields (journald) go through the same filter', () => {
    const p = parser('dovecot', 'syslog');
    assert.equal(p.parseFields({ time: NOW, ident: 'dovecot', message: DOVECOT_MSG }, NOW).kind, 'login');
    assert.deepEqual(p.parseFields({ time: NOW, ident: 'sshd', message: DOVECOT_MSG }, NOW), { kind: 'none', reason: 'ident' });
  });
});

describe('untrusted usernames', () => {
  const courier = (user: string): ParseResult => parser('courier', 'none').parse(`LOGIN, user=${user}, ip=[::ffff:192.0.2.7], port=[1]`, NOW);
  const cases: [string, string, string | undefined, string | undefined][] = [
    // what, username, expected user, expected userDropped (substring)
    ['plain', 'alice', 'alice', undefined],
    [`exactly ${MAX_USER} characters`, 'a'.repeat(MAX_USER), 'a'.repeat(MAX_USER), undefined],
    [`${MAX_USER + 1} characters`, 'a'.repeat(MAX_USER + 1), undefined, 'longer than 256'],
    ['300 characters carrying an address', `${'v'.repeat(300)}, ip=[6.6.6.6], port=[1]`, undefined, 'longer than 256'],
    ['a NUL', 'al\x00ice', undefined, 'control'],
    ['a tab', 'al\tice', undefined, 'control'],
    ['a raw CR (log_path keeps it)', 'ev\ril', undefined, 'control'],
    ['an ESC sequence', 'a\x1b[2Jb', undefined, 'control'],
    ['DEL', 'a\x7fb', undefined, 'control'],
    ['a C1 control (NEL)', 'a\u0085b', undefined, 'control'],
    ['U+2028 LINE SEPARATOR', 'a\u2028b', undefined, 'control'],
    ['UTF-8 letters are fine', 'jürgen', 'jürgen', undefined],
  ];
  for (const [what, user, wantUser, wantDropped] of cases) {
    test(what, () => {
      const r = login(courier(user));
      assert.equal(r.ip, '192.0.2.7', 'the grant is made all the same');
      assert.equal(r.user, wantUser);
      if (wantDropped === undefined) assert.equal(r.userDropped, undefined);
      else assert.match(r.userDropped ?? '', new RegExp(wantDropped));
    });
  }

  test('an empty username is no username', () => {
    const r = login(parser('dovecot', 'none').parse('imap-login: Login: user=<>, method=EXTERNAL, rip=192.0.2.7, lip=198.51.100.5', NOW));
    assert.equal(r.user, undefined);
    assert.equal(r.userDropped, undefined);
  });

  test('a logout line\'s user follows the same rule', () => {
    const r = parser('courier', 'none').parse(`LOGOUT, user=${'x'.repeat(300)}, ip=[::ffff:192.0.2.7], port=[1], top=0`, NOW);
    assert.equal(r.kind, 'logout');
    assert.equal(r.kind === 'logout' ? r.user : 'x', undefined);
  });

  test('an address that is not an address yields nothing, and says why', () => {
    const r = parser('courier', 'none').parse('LOGIN, user=alice, ip=[1.2.3.4.5], port=[1]', NOW);
    assert.deepEqual(r, { kind: 'none', reason: 'bad_ip', pattern: 'courier-login', detail: '1.2.3.4.5' });
  });
});

describe('two-line logins pair by ident[pid]', () => {
  const at = (hhmmss: string): string => `Nov 21 ${hhmmss}`;
  const session = (t: string, pid: number | undefined, ip: string, ident = 'popa3d'): string => `${at(t)} mx ${ident}${pid === undefined ? '' : `[${pid}]`}: Session from ${ip}`;
  const passed = (t: string, pid: number | undefined, user = 'alice', ident = 'popa3d'): string => `${at(t)} mx ${ident}${pid === undefined ? '' : `[${pid}]`}: Authentication passed for ${user}`;
  type Step = [line: string, want: string];
  const cases: [string, Step[]][] = [
    ['connect then auth of the same pid', [[session('19:00:00', 1, '192.0.2.7'), 'pending'], [passed('19:00:01', 1), 'login 192.0.2.7 alice']]],
    ['auth without connect', [[passed('19:00:01', 1), 'unpaired']]],
    ['connect of pid A, auth of pid B', [[session('19:00:00', 1, '192.0.2.7'), 'pending'], [passed('19:00:01', 2), 'unpaired'], [passed('19:00:02', 1), 'login 192.0.2.7 alice']]],
    ['a second auth of the same pid finds nothing', [[session('19:00:00', 1, '192.0.2.7'), 'pending'], [passed('19:00:01', 1), 'login 192.0.2.7 alice'], [passed('19:00:02', 1), 'unpaired']]],
    ['a reused pid: the newer connect wins', [[session('19:00:00', 1, '6.6.6.6'), 'pending'], [session('19:00:05', 1, '192.0.2.8'), 'pending'], [passed('19:00:06', 1), 'login 192.0.2.8 alice']]],
    ['the same pid under another ident is another process', [[session('19:00:00', 1, '6.6.6.6', 'other'), 'pending'], [passed('19:00:01', 1), 'unpaired']]],
    ['no pid, no pairing', [[session('19:00:00', undefined, '192.0.2.7'), 'pending'], [passed('19:00:01', undefined), 'unpaired']]],
    ['exactly 10 minutes later still pairs', [[session('19:00:00', 1, '192.0.2.7'), 'pending'], [passed('19:10:00', 1), 'login 192.0.2.7 alice']]],
    ['more than 10 minutes later does not', [[session('19:00:00', 1, '192.0.2.7'), 'pending'], [passed('19:10:01', 1), 'unpaired']]],
    ['an expired connect is dropped when a later one arrives', [[session('19:00:00', 1, '192.0.2.7'), 'pending'], [session('19:20:00', 2, '192.0.2.8'), 'pending'], [passed('19:20:01', 1), 'unpaired'], [passed('19:20:02', 2), 'login 192.0.2.8 alice']]],
  ];
  for (const [what, steps] of cases) {
    test(what, () => {
      const p = parser('popa3d', 'syslog', ['popa3d', 'other']);
      for (const [line, want] of steps) {
        const r = p.parse(line, NOW);
        const got = r.kind === 'login' ? `login ${r.ip} ${r.user}` : r.kind === 'none' ? r.reason : r.kind;
        assert.equal(got, want, line);
      }
    });
  }

  test('the pending table is bounded: a flood of connect lines pushes out the oldest', () => {
    const p = parser('popa3d', 'syslog');
    for (let pid = 1; pid <= 10_001; pid++) p.parse(session('19:00:00', pid, '192.0.2.7'), NOW);
    assert.equal(p.parse(passed('19:00:01', 1), NOW).kind, 'none');
    assert.equal(p.parse(passed('19:00:01', 10_001), NOW).kind, 'login');
  });

  test('without a line time the reader\'s clock ages the table', () => {
    const p = new LineParser({ format: getFormat('popa3d'), prefix: 'syslog' });
    const fields = (message: string) => ({ time: undefined, ident: 'popa3d', pid: 7, message });
    p.parseFields(fields('Session from 192.0.2.7'), NOW);
    assert.equal(p.parseFields(fields('Authentication passed for alice'), NOW + 10 * 60_000 + 1).kind, 'none');
    p.parseFields(fields('Session from 192.0.2.7'), NOW);
    assert.equal(p.parseFields(fields('Authentication passed for alice'), NOW + 60_000).kind, 'login');
  });
});

describe('custom patterns ([[watch]] pattern = "...")', () => {
  const errors: [string, string, RegExp][] = [
    ['not anchored at the start', 'Login: (?<ip>[0-9.]+)$', /anchored at the start/],
    ['not anchored at the end', '^Login: (?<ip>[0-9.]+)', /anchored at the end/],
    ['an escaped $ is no anchor', '^Login: (?<ip>[0-9.]+)\\$', /anchored at the end/],
    ['an invalid regular expression', '^Login: (?<ip>[0-9.]+$', /not a valid regular expression/],
    ['no ip group', '^Login: (?<user>\\S+) from [0-9.]+$', /named group \(\?<ip>/],
    ['a catch-all before the ip', '^Login: .* from (?<ip>[0-9.]+)$', /unsafe: catch-all/],
    ['\\S+ before the ip', '^Login: \\S+ from (?<ip>[0-9.]+)$', /unsafe: catch-all/],
    ['a top-level alternation', '^Login: x|from (?<ip>[0-9.]+)$', /unsafe: a top-level \|/],
    ['an ip group of anything', '^Login: from (?<ip>\\S+)$', /unsafe: the IP group/],
  ];
  for (const [what, source, want] of errors) {
    test(`refused: ${what}`, () => assert.throws(() => compileCustomPattern(source), want));
  }

  test('a valid pattern is tried before the format\'s own', () => {
    const custom = compileCustomPattern('^my-login: (?<user>.*) from (?<ip>[0-9a-fA-F:.]+)$');
    assert.equal(custom.name, 'custom');
    assert.equal(custom.kind, 'login');
    const p = new LineParser({ format: getFormat('dovecot'), prefix: 'syslog', custom });
    const r = login(p.parse('Nov 21 19:37:48 mx dovecot: my-login: x from 6.6.6.6 from ::ffff:192.0.2.7', NOW));
    assert.deepEqual([r.pattern, r.ip, r.user], ['custom', '192.0.2.7', 'x from 6.6.6.6']);
    assert.equal(login(p.parse(`Nov 21 19:37:48 mx dovecot: ${DOVECOT_MSG}`, NOW)).pattern, 'dovecot-login');
  });
});

describe('construction and the registry', () => {
  test('an unknown prefix is a configuration error naming the known ones', () => {
    assert.throws(
      () => new LineParser({ format: getFormat('dovecot'), prefix: 'iso' }),
      (e: unknown) => e instanceof RelaygateError && e.code === 'RG_ERR_CONFIG_INVALID' && /syslog, rfc3339, logpath, tai64n, none/.test(e.message),
    );
  });

  test('getFormat: an unknown name is a configuration error listing every format', () => {
    assert.throws(
      () => getFormat('exim'),
      (e: unknown) => e instanceof RelaygateError && e.code === 'RG_ERR_CONFIG_INVALID' && Object.keys(FORMATS).every((n) => e.message.includes(n)),
    );
    assert.throws(() => getFormat('toString'), RelaygateError, 'no inherited property is a format');
  });

  test('the needle keeps lines off the regex', () => {
    const format: LogFormat = {
      name: 't',
      description: 't',
      idents: ['t'],
      samples: 't',
      patterns: [{ name: 'p', kind: 'login', needle: 'NEEDLE', re: /^from (?<ip>[0-9.]+)$/ }],
    };
    const p = new LineParser({ format, prefix: 'none' });
    assert.deepEqual(p.parse('from 192.0.2.7', NOW), { kind: 'none', reason: 'no_match' });
  });
});

describe('needles without logouts (a watcher that does not track sessions skips their ends unread)', () => {
  test('every format: the needles of its non-logout patterns, none that only a logout pattern needs', () => {
    for (const f of Object.values(FORMATS)) {
      const p = new LineParser({ format: f, prefix: 'none' });
      const kept = p.needlesWithoutLogouts();
      if (p.needles === undefined) {
        assert.equal(kept, undefined, f.name);
        continue;
      }
      const need = new Set(f.patterns.filter((x) => x.kind !== 'logout').map((x) => x.needle));
      if (need.size === 0) continue; // nothing but logouts: then all are kept
      assert.deepEqual(new Set(kept), need, `${f.name}: every login, connect and auth pattern keeps its needle, and only those`);
    }
    assert.deepEqual(new LineParser({ format: getFormat('dovecot'), prefix: 'none' }).needlesWithoutLogouts(), ['user=<']);
  });

  test('a line that parses as anything but a logout holds one of them', () => {
    const p = parser('dovecot', 'none');
    const kept = p.needlesWithoutLogouts()!;
    const lines = [DOVECOT_MSG, 'imap-login: Logged in: user=<bob>, method=PLAIN, rip=192.0.2.8, lip=198.51.100.5, session=<x>', 'imap(bob)<77><AbCd>: Disconnected: Logged out in=1 out=2'];
    for (const line of lines) {
      const r = p.parse(line, NOW);
      assert.equal(r.kind === 'logout', !kept.some((n) => line.includes(n)), line);
    }
  });

  test('with a custom pattern (no needle) there are no needles at all', () => {
    const p = new LineParser({ format: getFormat('dovecot'), prefix: 'none', custom: compileCustomPattern('^ok (?<ip>[0-9.]+)$') });
    assert.equal(p.needles, undefined);
    assert.equal(p.needlesWithoutLogouts(), undefined);
  });
});
