// Postfix-shaped SASL lines, matched with fail2ban's own postfix filter (config/filter.d/postfix.conf and
// common.conf of fail2ban 1.x), modes `auth` and `aggressive`, including hostile usernames.
//
// The filter is copied below with mechanical translations from Python to JavaScript regex syntax: the
// inline flag in `((?i)LOGIN|PLAIN|(?:CRAM|DIGEST)-MD5)`, which Node 20 lacks, is written out letter by
// letter (`[Ll][Oo]...`); <HOST> is fail2ban's address group, narrowed to IPv4/IPv6 literals; the leading
// syslog timestamp is removed first, as fail2ban's date detector does.
//
// Debian packages: none.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clientNamaddr, formatSaslFailure, formatSaslLockout, formatSaslSuccess, printable } from '../../src/auth/log.ts';

// ---- fail2ban config/filter.d/common.conf (logtype "file") ----
const __pid_re = String.raw`(?:\[\d+\])`;
const _daemon = String.raw`postfix(-\w+)?/[^/\[:\s]+(?:/smtp[ds])?`; // postfix.conf
const __daemon_re = String.raw`[\[\(]?${_daemon}(?:\(\S+\))?[\]\)]?:?`;
const __daemon_combs_re = String.raw`(?:${__pid_re}?:\s+${__daemon_re}|${__daemon_re}${__pid_re}?:?)`;
const __prefix_line = String.raw`(?:\[\])?\s*(?:<[^.]+\.[^.]+>\s+)?(?:\S+\s+)?(?:kernel:\s?\[ *\d+\.\d+\]:?\s+)?(?:@vserver_\S+\s+)?(?:${__daemon_combs_re}\s+)?(?:\[ID \d+ \S+\]\s+)?`;
// ---- fail2ban config/filter.d/postfix.conf ----
const _port = String.raw`(?::\d+)?`;
const HOST = String.raw`(?<host>(?:\d{1,3}\.){3}\d{1,3}|[0-9a-fA-F:]{2,39})`;
const MECH = String.raw`((?:[Ll][Oo][Gg][Ii][Nn]|[Pp][Ll][Aa][Ii][Nn]|(?:[Cc][Rr][Aa][Mm]|[Dd][Ii][Gg][Ee][Ss][Tt])-[Mm][Dd]5))`;
const mdpr_auth = 'warning:';
const mdre_auth = String.raw`^[^[]*\[${HOST}\]${_port}: SASL ${MECH} authentication failed:(?! Connection lost to authentication server| Invalid authentication mechanism)`;
const mdre_auth2 = String.raw`^[^[]*\[${HOST}\]${_port}: SASL ${MECH} authentication failed:(?! Connection lost to authentication server)`;
// prefregex = ^%(__prefix_line)s<mdpr-<mode>> <F-CONTENT>.+</F-CONTENT>$  (aggressive's mdpr includes auth's)
const prefregex = new RegExp(String.raw`^${__prefix_line}${mdpr_auth} (?<content>.+)$`);

/** fail2ban's two-step match: prefregex takes the content, then the mode's failregex must match it. */
function fail2ban(line: string, mode: 'auth' | 'aggressive'): string | undefined {
  // fail2ban's date detector (datepattern {^LN-BEG}) removes the leading timestamp before the regexes run
  const rest = line.replace(/^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d /, '');
  const pre = prefregex.exec(rest);
  if (!pre) return undefined;
  const m = new RegExp(mode === 'auth' ? mdre_auth : mdre_auth2).exec(pre.groups!.content!);
  return m?.groups!.host;
}

/** As syslog would write our message with an ident the filter's `_daemon` accepts. */
const syslogLine = (msg: string): string => `Nov 21 16:36:38 mx1 postfix/relaygate[2550]: ${msg}`;

test('failure lines are exactly Postfix\'s', () => {
  const c = { ip: '192.0.2.9' };
  assert.equal(formatSaslFailure({ client: c, mechanism: 'LOGIN', outcome: 'fail' }), 'warning: unknown[192.0.2.9]: SASL LOGIN authentication failed: UGFzc3dvcmQ6');
  assert.equal(formatSaslFailure({ client: c, mechanism: 'PLAIN', outcome: 'fail' }), 'warning: unknown[192.0.2.9]: SASL PLAIN authentication failed: authentication failure');
  assert.equal(formatSaslFailure({ client: c, mechanism: 'CRAM-MD5', outcome: 'fail', username: 'alice' }), 'warning: unknown[192.0.2.9]: SASL CRAM-MD5 authentication failed: authentication failure, sasl_username=alice');
  assert.equal(formatSaslFailure({ client: c, mechanism: 'PLAIN', outcome: 'tempfail' }), 'warning: unknown[192.0.2.9]: SASL PLAIN authentication failed: Connection lost to authentication server');
  assert.equal(formatSaslSuccess({ client: { ip: '192.0.2.7' }, mechanism: 'PLAIN', username: 'alice' }), 'client=unknown[192.0.2.7], sasl_method=PLAIN, sasl_username=alice');
  assert.equal(formatSaslSuccess({ client: { ip: '192.0.2.7' }, mechanism: 'LOGIN', username: 'alice', queueId: '4F3A2B1C' }), '4F3A2B1C: client=unknown[192.0.2.7], sasl_method=LOGIN, sasl_username=alice');
  assert.equal(formatSaslLockout({ client: { ip: '192.0.2.9' }, failures: 5 }), 'warning: SASL authentication failure limit exceeded: 5 from unknown[192.0.2.9] for service smtp');
});

test('fail2ban postfix filter, modes auth and aggressive: failures match with the right host, for every mechanism', () => {
  for (const mechanism of ['PLAIN', 'LOGIN', 'CRAM-MD5'] as const) {
    for (const [client, host] of [
      [{ ip: '192.0.2.9' }, '192.0.2.9'],
      [{ ip: '::ffff:192.0.2.9' }, '192.0.2.9'],
      [{ ip: '2001:db8::9', port: 50123 }, '2001:db8::9'],
      [{ ip: '198.51.100.4', name: 'mail.example.net' }, '198.51.100.4'],
    ] as const) {
      const line = syslogLine(formatSaslFailure({ client, mechanism, outcome: 'fail', username: 'alice@example.org' }));
      assert.equal(fail2ban(line, 'auth'), host, line);
      assert.equal(fail2ban(line, 'aggressive'), host, line);
    }
  }
});

test('the real Postfix line from the wire capture era matches the copied filter too (the copy is faithful)', () => {
  const postfix = 'Nov 21 16:36:38 mx1 postfix/submission/smtpd[2551]: warning: unknown[127.0.0.14]: SASL PLAIN authentication failed: ';
  assert.equal(fail2ban(postfix, 'auth'), '127.0.0.14');
  assert.equal(fail2ban('Nov 21 16:36:38 mx1 postfix/smtpd[2551]: warning: unknown[127.0.0.14]: SASL LOGIN authentication failed: UGFzc3dvcmQ6', 'auth'), '127.0.0.14');
});

test('backend outages (tempfail), successes and lockout lines never match: no client is banned for our outage', () => {
  const lines = [
    formatSaslFailure({ client: { ip: '192.0.2.9' }, mechanism: 'PLAIN', outcome: 'tempfail', username: 'alice' }),
    formatSaslSuccess({ client: { ip: '192.0.2.7' }, mechanism: 'PLAIN', username: 'alice' }),
    formatSaslLockout({ client: { ip: '192.0.2.9' }, failures: 5 }),
  ];
  for (const l of lines) {
    assert.equal(fail2ban(syslogLine(l), 'auth'), undefined, l);
    assert.equal(fail2ban(syslogLine(l), 'aggressive'), undefined, l);
  }
});

test('hostile usernames cannot move the matched host, start a new line, or make a success look like a failure', () => {
  const hostile = [
    'x]: SASL PLAIN authentication failed: [6.6.6.6]',
    'evil\nNov 21 16:36:38 mx1 postfix/smtpd[1]: warning: unknown[6.6.6.6]: SASL LOGIN authentication failed: x',
    '[6.6.6.6]',
    'a\r\u2028b\u0085c\u001b[31m',
    'x'.repeat(1000),
  ];
  for (const u of hostile) {
    const fail = formatSaslFailure({ client: { ip: '192.0.2.9' }, mechanism: 'LOGIN', outcome: 'fail', username: u });
    assert.ok(!/[\r\n\u2028\u2029\u0085\u001b]/.test(fail), JSON.stringify(fail));
    assert.ok(fail.length < 400);
    assert.equal(fail2ban(syslogLine(fail), 'auth'), '192.0.2.9', fail);
    const ok = formatSaslSuccess({ client: { ip: '192.0.2.7' }, mechanism: 'PLAIN', username: u });
    assert.ok(!/[\r\n\u2028\u2029]/.test(ok));
    assert.equal(fail2ban(syslogLine(ok), 'auth'), undefined, ok);
    assert.equal(fail2ban(syslogLine(ok), 'aggressive'), undefined, ok);
  }
});

test('namaddr: only a normalized IP goes between the brackets; junk names and addresses print as unknown', () => {
  assert.equal(clientNamaddr({ ip: '::ffff:10.0.0.1' }), 'unknown[10.0.0.1]');
  assert.equal(clientNamaddr({ ip: '2001:DB8:0:0::1', port: 25 }), 'unknown[2001:db8::1]:25');
  assert.equal(clientNamaddr({ ip: '6.6.6.6]: x [1.2.3.4' }), 'unknown[unknown]');
  assert.equal(clientNamaddr({ ip: '192.0.2.1', name: 'a[b]' }), 'unknown[192.0.2.1]');
  assert.equal(printable('a\tb\x7fc'), 'a?b?c');
});
