// One generated suite per registry row (src/sources/formats/index.ts), fail2ban-style: the format's annotated
// sample file test/fixtures/logs/<name>.log must exist, every line in it must yield exactly what its `#>` line
// says (kind, ip, user, service, session; the reason for `none`), every pattern of the format must have been
// hit by some sample, the file must hold hostile samples, every pattern must pass the security lint, and README's
// "Log formats" section must list the format. The lint itself is proven able to fail by a table of bad patterns.
//
// Sample-file syntax (test/sources/sample-file.ts; repeated at the top of every sample file):
//   #! prefix=syslog now=2026-11-21T20:00:00Z ident=a,b|default   how the following lines are read
//   #> grant ip=IP [user=U] [service=S] [session=ID] [dropped] [hostile]
//   #> none [reason=R] [hostile]   |   #> logout [session=ID] [ip=IP] [user=U]   |   #> pending
// Exactly one `#>` line above every log line. Security: the samples are the proof that a log line cannot fake a
// grant; a format without hostile samples fails here.

process.env.TZ = 'UTC'; // BSD syslog stamps are local time; keep the samples' times independent of the host

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { FORMATS } from '../../src/sources/formats/index.ts';
import type { LogFormat } from '../../src/sources/formats/index.ts';
import { LineParser, lintPattern, type ParseResult } from '../../src/sources/parser.ts';
import { parseSampleFile, SampleFileError, type SampleExpectation, type SampleLine } from './sample-file.ts';

const LOGS = new URL('../fixtures/logs/', import.meta.url);
const README = new URL('../../README.md', import.meta.url);

function show(v: string | undefined): string {
  return v === undefined ? '-' : JSON.stringify(v);
}

function describeResult(r: ParseResult): string {
  switch (r.kind) {
    case 'login':
      return `grant ip=${r.ip} user=${show(r.user)} service=${show(r.service)} session=${show(r.session)}${r.userDropped ? ' dropped' : ''} [${r.pattern}]`;
    case 'logout':
      return `logout session=${show(r.session)} ip=${show(r.ip)} user=${show(r.user)} [${r.pattern}]`;
    case 'none':
      return `none reason=${r.reason}${r.pattern ? ` [${r.pattern}]` : ''}`;
  }
}

/** Empty when the result is what the annotation demands, else what differs. */
function mismatch(e: SampleExpectation, r: ParseResult): string | undefined {
  const diffs: string[] = [];
  const eq = (what: string, want: string | undefined, got: string | undefined): void => {
    if (want !== got) diffs.push(`${what}: want ${show(want)}, got ${show(got)}`);
  };
  switch (e.kind) {
    case 'grant':
      if (r.kind !== 'login') return `want a grant`;
      eq('ip', e.ip, r.ip);
      eq('user', e.user, r.user);
      eq('service', e.service, r.service);
      eq('session', e.session, r.session);
      if (e.dropped !== (r.userDropped !== undefined)) diffs.push(e.dropped ? 'want the user dropped' : `user dropped: ${r.userDropped}`);
      break;
    case 'logout':
      if (r.kind !== 'logout') return 'want a logout';
      eq('session', e.session, r.session);
      eq('ip', e.ip, r.ip);
      eq('user', e.user, r.user);
      break;
    case 'pending':
      if (r.kind !== 'none' || r.reason !== 'pending') return 'want pending (first half of a two-line login)';
      break;
    case 'none':
      if (r.kind !== 'none') return 'want nothing';
      if (e.reason !== undefined) eq('reason', e.reason, r.reason);
      else if (r.reason === 'pending') return 'want nothing, got pending (annotate it `pending`)';
      break;
  }
  return diffs.length > 0 ? diffs.join('; ') : undefined;
}

interface Run {
  readonly failures: string[];
  /** patterns that produced a login, a logout or a pending first half */
  readonly hit: Set<string>;
}

/** Feeds the sample lines to one parser per (prefix, idents) run, so two-line logins pair as in production. */
function runSamples(format: LogFormat, samples: readonly SampleLine[]): Run {
  const failures: string[] = [];
  const hit = new Set<string>();
  let parser: LineParser | undefined;
  let key = '';
  for (const s of samples) {
    const k = `${s.settings.prefix}|${s.settings.idents?.join(',') ?? ''}`;
    if (parser === undefined || k !== key) {
      parser = new LineParser({ format, prefix: s.settings.prefix, idents: s.settings.idents });
      key = k;
    }
    const r = parser.parse(s.line, s.settings.now);
    if (r.kind !== 'none' || r.reason === 'pending') hit.add(r.pattern!);
    const why = mismatch(s.expect, r);
    if (why !== undefined) failures.push(`L${s.lineNo}: ${why}\n    line: ${JSON.stringify(s.line.slice(0, 200))}\n    got:  ${describeResult(r)}`);
  }
  return { failures, hit };
}

function loadSamples(name: string): { samples?: SampleLine[]; error?: string } {
  let text: string;
  try {
    text = readFileSync(new URL(`${name}.log`, LOGS), 'utf8');
  } catch (err) {
    return { error: `missing sample file test/fixtures/logs/${name}.log (${(err as Error).message})` };
  }
  try {
    return { samples: parseSampleFile(text, `${name}.log`) };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

const readme = readFileSync(README, 'utf8');
const formatsBlock = /<!-- formats:start -->([\s\S]*?)<!-- formats:end -->/.exec(readme)?.[1];

test('the registry is not empty and names match their keys', () => {
  assert.ok(Object.keys(FORMATS).length >= 13);
  for (const [name, f] of Object.entries(FORMATS)) {
    assert.equal(f.name, name);
    assert.ok(f.patterns.length > 0, name);
    assert.ok(f.idents.length > 0, `${name}: a format names its syslog idents`);
    assert.equal(new Set(f.patterns.map((p) => p.name)).size, f.patterns.length, `${name}: pattern names are unique`);
  }
});

for (const format of Object.values(FORMATS)) {
  describe(`format ${format.name}`, () => {
    const loaded = loadSamples(format.name);
    const run = loaded.samples === undefined ? undefined : runSamples(format, loaded.samples);

    test('has a well-formed sample file', () => {
      assert.ok(loaded.samples, loaded.error);
      assert.ok(loaded.samples.length > 0, 'the sample file holds no log lines');
    });

    test('every sample line yields what its annotation says', () => {
      assert.ok(run, loaded.error);
      assert.equal(run.failures.length, 0, `${run.failures.length} sample line(s) misbehave:\n${run.failures.join('\n')}`);
    });

    test('every pattern is matched by at least one sample', () => {
      assert.ok(run, loaded.error);
      const unused = format.patterns.map((p) => p.name).filter((n) => !run.hit.has(n));
      assert.deepEqual(unused, [], `patterns without a matching sample: ${unused.join(', ')}`);
    });

    test('has hostile samples, among them one that must yield nothing', () => {
      assert.ok(loaded.samples, loaded.error);
      const hostile = loaded.samples.filter((s) => s.expect.hostile);
      assert.ok(hostile.length > 0, 'no sample is marked hostile');
      assert.ok(
        hostile.some((s) => s.expect.kind === 'none'),
        'no hostile sample must yield nothing (a failed login carrying a success line, another program, ...)',
      );
    });

    test('every pattern passes the security lint and has a needle', () => {
      for (const p of format.patterns) {
        assert.equal(lintPattern(p.re), undefined, `${p.name}: ${lintPattern(p.re)}`);
        assert.ok(p.needle.length > 0, `${p.name}: a needle keeps non-matching lines off the regex`);
        if (p.kind === 'login' || p.kind === 'connect') assert.ok(p.re.source.includes('(?<ip>'), `${p.name}: must capture ip`);
      }
    });

    test('README lists the format', () => {
      assert.ok(formatsBlock, 'README.md lacks the <!-- formats:start --> ... <!-- formats:end --> section');
      assert.ok(formatsBlock.includes(`\`${format.name}\``), `README "Log formats" does not list \`${format.name}\``);
    });
  });
}

describe('the lint catches unsafe patterns', () => {
  const bad: [string, RegExp, RegExp][] = [
    ['a catch-all before the IP', /^Login: .*rip=(?<ip>[0-9.]+)$/, /catch-all \.\*/],
    ['a lazy catch-all before the IP', /^Login: .+?rip=(?<ip>[0-9.]+)$/, /catch-all/],
    ['\\S+ before the IP', /^Login: \S+ rip=(?<ip>[0-9.]+)$/, /catch-all \\S\+/],
    ['[^\\s]* before the IP', /^Login: [^\s]* rip=(?<ip>[0-9.]+)$/, /catch-all/],
    ['[\\s\\S]* before the IP', /^Login: [\s\S]* rip=(?<ip>[0-9.]+)$/, /catch-all/],
    ['.{1,} before the IP', /^Login: .{1,} rip=(?<ip>[0-9.]+)$/, /catch-all/],
    ['a catch-all in another group before the IP', /^Login: (?<host>.*) rip=(?<ip>[0-9.]+)$/, /catch-all/],
    ['no ^', /Login: user=<(?<user>.*)>, rip=(?<ip>[0-9.]+)$/, /anchored at the start/],
    ['no $', /^Login: user=<(?<user>.*)>, rip=(?<ip>[0-9.]+)/, /anchored at the end/],
    ['an escaped $', /^Login: user=<(?<user>.*)>, rip=(?<ip>[0-9.]+)\$/, /anchored at the end/],
    ['a top-level alternation', /^Login: x|rip=(?<ip>[0-9.]+)$/, /top-level \|/],
    ['the m flag', /^Login: rip=(?<ip>[0-9.]+)$/m, /m flag/],
    ['an IP group of anything', /^Login: rip=(?<ip>.+)$/, /more than address characters/],
    ['an IP group of \\S', /^Login: rip=(?<ip>\S+)$/, /more than address characters/],
    ['an IP group with a negated class', /^Login: rip=(?<ip>[^,]+), lip$/, /negated character class/],
  ];
  for (const [what, re, want] of bad) {
    test(what, () => {
      const problem = lintPattern(re);
      assert.ok(problem !== undefined, `lint passed ${re}`);
      assert.match(problem, want);
    });
  }

  const good: [string, RegExp][] = [
    ['greedy user before the IP', /^Login: user=<(?<user>.*)>, rip=(?<ip>[0-9a-fA-F:.]+), lip=[0-9.]+$/],
    ['IP first, catch-all after it', /^login: \[(?<ip>[0-9a-fA-F:.]+)\] (?<user>.*) User logged in$/],
    ['alternation inside a group', /^(?:Login|Logged in): rip=(?<ip>[0-9.]+)$/],
    ['an escaped dot-star before the IP', /^a\.*b rip=(?<ip>[0-9.]+)$/],
    ['no IP group (auth/logout)', /^Authentication passed for (?<user>.*)$/],
  ];
  for (const [what, re] of good) {
    test(`passes: ${what}`, () => assert.equal(lintPattern(re), undefined));
  }
});

describe('the sample-file format', () => {
  test('a log line without its #> annotation is an error', () => {
    const text = '#! prefix=syslog\n#> none\nNov 21 19:37:47 mx dovecot: a\nNov 21 19:37:48 mx dovecot: b\n';
    assert.throws(() => parseSampleFile(text, 't.log'), (e: unknown) => e instanceof SampleFileError && /t\.log:4: log line without a #> annotation/.test(e.message));
  });

  test('an annotation without its log line is an error (at the end, and before another annotation)', () => {
    assert.throws(() => parseSampleFile('#> none\n', 't.log'), /t\.log:1: annotation at the end/);
    assert.throws(() => parseSampleFile('#> none\n#> none\nx\n', 't.log'), /t\.log:2: the annotation of line 1/);
  });

  test('unknown kinds, keys, words and directive values are errors', () => {
    assert.throws(() => parseSampleFile('#> maybe\nx\n'), /starts with one of/);
    assert.throws(() => parseSampleFile('#> grant user=alice\nx\n'), /names its ip/);
    assert.throws(() => parseSampleFile('#> grant ip=1.2.3.4 usr=alice\nx\n'), /unknown key "usr"/);
    assert.throws(() => parseSampleFile('#> none evil\nx\n'), /unknown word "evil"/);
    assert.throws(() => parseSampleFile('#! prefix=nope\n'), /unknown prefix/);
    assert.throws(() => parseSampleFile('#! now=yesterday\n'), /not a time/);
    assert.throws(() => parseSampleFile('#! colour=red\n'), /unknown directive key/);
    assert.throws(() => parseSampleFile('#> grant ip=1.2.3.4 user="unterminated\nx\n'), /cannot read|bad JSON/);
  });

  test('annotations, JSON values, flags and directives are read as written', () => {
    const s = parseSampleFile(
      [
        '# comment',
        '#! prefix=rfc3339 now=2026-01-02T03:04:05Z ident=a,b',
        '#> grant ip=192.0.2.1 user="x [6.6.6.6] \\"y\\"" service=pop3 session=S1 dropped hostile',
        '# after an annotation, even a #-line is the log line',
        '',
        '#! ident=default',
        '#> logout session=S1',
        'line two',
      ].join('\n'),
    );
    assert.equal(s.length, 2);
    assert.deepEqual(s[0]!.expect, { kind: 'grant', ip: '192.0.2.1', user: 'x [6.6.6.6] "y"', service: 'pop3', session: 'S1', dropped: true, hostile: true });
    assert.equal(s[0]!.line, '# after an annotation, even a #-line is the log line');
    assert.deepEqual(s[0]!.settings, { prefix: 'rfc3339', now: Date.parse('2026-01-02T03:04:05Z'), idents: ['a', 'b'] });
    assert.equal(s[1]!.lineNo, 8);
    assert.equal(s[1]!.settings.idents, undefined);
    assert.equal(s[1]!.settings.prefix, 'rfc3339');
  });
});
