// `relaygate test-log` in-process: testLogCommand on the annotated sample files and on small temporary logs, with
// stdout captured. Checks the per-line output against the sample annotations, the totals, --verbose and --json,
// the exit status (1 when nothing matched), escaping of hostile usernames, long lines, and the usage errors.

process.env.TZ = 'UTC';

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testLogCommand, type TestLogOptions } from '../../src/cli/test-log.ts';
import { RelaygateError } from '../../src/errors.ts';
import { parseSampleFile } from '../sources/sample-file.ts';

const SAMPLES = new URL('../fixtures/logs/', import.meta.url);
let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rg-test-log-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs the command with stdout captured; returns what it printed and the exit code it set (then clears it). */
async function run(opts: TestLogOptions): Promise<{ out: string; code: number | string | undefined }> {
  const chunks: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array): boolean => {
    chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    return true;
  }) as typeof process.stdout.write;
  try {
    await testLogCommand(opts);
  } finally {
    process.stdout.write = write;
  }
  const code = process.exitCode;
  process.exitCode = undefined; // the test process itself must not exit 1
  return { out: chunks.join(''), code };
}

async function logFile(name: string, lines: string[]): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, `${lines.join('\n')}\n`);
  return path;
}

describe('on an annotated sample file', () => {
  for (const format of ['cucipop', 'vm-pop3d', 'uw-imap']) {
    test(`${format}: one line of output per grant, as the annotations say`, async () => {
      const path = new URL(`${format}.log`, SAMPLES);
      const samples = parseSampleFile(await readFile(path, 'utf8'));
      const grants = samples.filter((s) => s.expect.kind === 'grant');
      assert.ok(grants.length > 0);
      const { out, code } = await run({ format, file: path.pathname });
      assert.equal(code, 0);
      const printed = out.split('\n').filter((l) => /^L\d+: grant /.test(l));
      assert.equal(printed.length, grants.length, out);
      for (const g of grants) {
        const line = printed.find((l) => l.startsWith(`L${g.lineNo}: grant ip=${g.expect.ip} `));
        assert.ok(line, `no output for L${g.lineNo} (${g.expect.ip}) in:\n${out}`);
        assert.match(line, /\[[a-z0-9-]+\]$/, 'the pattern name ends the line');
      }
      assert.match(out, new RegExp(`grants: ${grants.length}\\b`));
      assert.match(out, /^by pattern:$/m);
      assert.match(out, /^by reason \(nothing\):$/m);
    });
  }
});

describe('on small logs', () => {
  test('the output format, a logout, totals per pattern and per reason', async () => {
    const file = await logFile('courier.log', [
      'Nov 21 19:45:43 mx pop3d: Connection, ip=[::ffff:127.0.0.7], port=[39911]',
      'Nov 21 19:45:43 mx pop3d: LOGIN, user=alice, ip=[::ffff:127.0.0.7], port=[39911]',
      'Nov 21 19:45:43 mx pop3d: LOGOUT, user=alice, ip=[::ffff:127.0.0.7], port=[39911], top=0, retr=0, rcvd=6, sent=30, time=0',
      'Nov 21 19:46:02 mx imapd: LOGIN, user=x, ip=[6.6.6.6], port=[1], ip=[::ffff:127.0.2.1], port=[40771], protocol=IMAP',
      'Nov 21 19:46:05 mx imapd: LOGIN FAILED, user=x, ip=[6.6.6.6], port=[1], ip=[::ffff:127.0.1.1], port=[40183]',
      'Nov 21 19:45:43 mx authdaemond: Installation complete: authuserdb',
    ]);
    const { out, code } = await run({ format: 'courier', file });
    assert.equal(code, 0);
    const lines = out.split('\n');
    assert.equal(lines[0], 'test-log: format courier, prefix syslog, idents pop3d,imapd,pop3d-ssl,imapd-ssl,courierpop3login,imaplogin');
    assert.ok(lines.includes('L2: grant ip=127.0.0.7 user=alice service=- [courier-login]'), out);
    assert.ok(lines.includes('L3: logout ip=127.0.0.7 user=alice [courier-logout]'), out);
    assert.ok(lines.includes('L4: grant ip=127.0.2.1 user="x, ip=[6.6.6.6], port=[1]" service=imap [courier-login]'), out);
    assert.ok(!lines.some((l) => l.startsWith('L1:') || l.startsWith('L5:') || l.startsWith('L6:')), 'lines yielding nothing are not shown without --verbose');
    assert.ok(lines.includes('lines: 6  grants: 2  logouts: 1  nothing: 3'), out);
    assert.ok(lines.includes('  courier-login   2'), out);
    assert.ok(lines.includes('  courier-logout  1'), out);
    assert.ok(lines.includes('  no_match  2'), out);
    assert.ok(lines.includes('  ident     1'), out);
  });

  test('--verbose shows every line and why it yields nothing', async () => {
    const file = await logFile('popa3d.log', [
      'Nov 21 19:42:03 mx popa3d[24583]: Session from 127.0.0.7',
      'Nov 21 19:42:03 mx popa3d[24583]: Authentication passed for rgpopalice',
      'Nov 21 19:42:04 mx popa3d[24584]: Authentication passed for rgpopbob',
      'garbage without a prefix',
    ]);
    const { out, code } = await run({ format: 'popa3d', file, verbose: true });
    assert.equal(code, 0);
    const lines = out.split('\n');
    assert.ok(lines.includes('L1: none (pending) [popa3d-session]'), out);
    assert.ok(lines.includes('L2: grant ip=127.0.0.7 user=rgpopalice service=pop3 [popa3d-auth]'), out);
    assert.ok(lines.includes('L3: none (unpaired) [popa3d-auth]'), out);
    assert.ok(lines.includes('L4: none (prefix)'), out);
  });

  test('exit status 1 when no line yields a login or logout', async () => {
    const file = await logFile('failures.log', [
      'Nov 21 19:37:52 mx dovecot: pop3-login: Disconnected: Aborted login by logging out (auth failed, 1 attempts in 2 secs): user=<alice>, method=PLAIN, rip=127.0.0.8, lip=127.0.0.1, session=<BKEGf85g4bN/AAAI>',
      'Nov 21 19:38:26 mx dovecot: pop3-login: Disconnected: Aborted login by logging out (auth failed, 1 attempts in 2 secs): user=<x> Login: user=<alice>, method=PLAIN, rip=6.6.6.6, lip=127.0.0.1, mpid=1, ses...>, method=PLAIN, rip=127.0.1.7, lip=127.0.0.1, session=<eIkLgc5gc5l/AAEH>',
    ]);
    const { out, code } = await run({ format: 'dovecot', file });
    assert.equal(code, 1);
    assert.match(out, /grants: 0 {2}logouts: 0 {2}nothing: 2/);
    assert.match(out, /\(no line matched a pattern\)/);
  });

  test('an empty file: exit status 1', async () => {
    const file = await logFile('empty.log', []);
    assert.equal((await run({ format: 'dovecot', file })).code, 1);
  });

  test('--prefix, --ident and --pattern are honoured', async () => {
    const file = await logFile('custom.log', [
      '2026-11-21T16:33:38.969450+00:00 vm dovecot-proto: pop3-login: Login: user=<alice>, method=PLAIN, rip=127.0.0.7, lip=127.0.0.1, mpid=32388, session=<s+xG7MtgZpV/AAAH>',
      '2026-11-21T16:33:39.000000+00:00 vm dovecot-proto: my-login: bob from 192.0.2.9',
    ]);
    const plain = await run({ format: 'dovecot', prefix: 'rfc3339', file });
    assert.equal(plain.code, 1, 'the default ident is dovecot');
    const { out, code } = await run({ format: 'dovecot', prefix: 'rfc3339', ident: 'dovecot-proto', pattern: '^my-login: (?<user>.*) from (?<ip>[0-9a-fA-F:.]+)$', file });
    assert.equal(code, 0);
    assert.match(out, /^L1: grant ip=127\.0\.0\.7 user=alice service=pop3 session=s\+xG7MtgZpV\/AAAH \[dovecot-login\]$/m);
    assert.match(out, /^L2: grant ip=192\.0\.2\.9 user=bob service=- \[custom\]$/m);
  });

  test('--json: one object per line, then a summary', async () => {
    const file = await logFile('json.log', ['Nov 21 19:40:01 mx teapop[993]: Successful login for alice [192.0.2.7]', 'Nov 21 19:40:06 mx teapop[998]: Failed login for alice [192.0.2.66]']);
    const { out, code } = await run({ format: 'teapop', file, json: true, verbose: true });
    assert.equal(code, 0);
    const objs = out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(objs.length, 3);
    assert.deepEqual(objs[0], { line: 1, kind: 'login', pattern: 'teapop-login', ip: '192.0.2.7', user: 'alice', service: 'pop3' });
    assert.deepEqual(objs[1], { line: 2, kind: 'none', reason: 'no_match' });
    assert.deepEqual(objs[2], { summary: { lines: 2, grants: 1, logouts: 0, nothing: 1, cut: 0, byPattern: { 'teapop-login': 1 }, byReason: { no_match: 1 } } });
  });

  test('hostile usernames are shown quoted, control characters escaped', async () => {
    const file = await logFile('hostile.log', ['Nov 21 19:40:01 mx teapop[993]: Successful login for a\x1b[2J"b [192.0.2.7]']);
    const { out } = await run({ format: 'teapop', file });
    assert.ok(!out.includes('\x1b'), 'no raw ESC reaches the terminal');
    assert.match(out, /^L1: grant ip=192\.0\.2\.7 user=- service=pop3 user_dropped="username holds control characters" \[teapop-login\]$/m);
    const file2 = await logFile('hostile2.log', ['Nov 21 19:40:01 mx teapop[993]: Successful login for a "b" [192.0.2.7]']);
    assert.match((await run({ format: 'teapop', file: file2 })).out, /^L1: grant ip=192\.0\.2\.7 user="a \\"b\\"" service=pop3 \[teapop-login\]$/m);
  });

  test('a line longer than 16 KiB is cut like the tailer cuts it, and the next line is read normally', async () => {
    const long = `Nov 21 19:40:01 mx teapop[993]: Successful login for ${'a'.repeat(20_000)} [6.6.6.6]`;
    const file = join(dir, 'long.log');
    await writeFile(file, `${long}\nNov 21 19:40:02 mx teapop[994]: Successful login for bob [192.0.2.8]\r\nno newline at the end`);
    const { out, code } = await run({ format: 'teapop', file, verbose: true });
    assert.equal(code, 0);
    assert.match(out, /^L1: none \(no_match\) \(line cut at 16384 bytes\)$/m);
    assert.match(out, /^L2: grant ip=192\.0\.2\.8 user=bob service=pop3 \[teapop-login\]$/m);
    assert.match(out, /^L3: none \(prefix\)$/m);
    assert.match(out, /cut: 1/);
  });
});

describe('usage errors', () => {
  const cases: [string, Partial<TestLogOptions>, RegExp][] = [
    ['an unknown format', { format: 'exim' }, /--format "exim": unknown log format; known: dovecot, courier/],
    ['an unknown prefix', { prefix: 'iso8601' }, /--prefix "iso8601": unknown prefix; known: syslog, rfc3339/],
    ['an empty ident list', { ident: ' , ' }, /--ident: give at least one/],
    ['an unanchored pattern', { pattern: 'from (?<ip>[0-9.]+)$' }, /--pattern: pattern must be anchored at the start/],
    ['an unsafe pattern', { pattern: '^.* from (?<ip>[0-9.]+)$' }, /--pattern: pattern is unsafe: catch-all/],
    ['a missing file', { file: '/nonexistent/relaygate/mail.log' }, /cannot read "\/nonexistent\/relaygate\/mail\.log": ENOENT/],
    ['a directory', { file: '/' }, /cannot read "\/": EISDIR/],
  ];
  for (const [what, opts, want] of cases) {
    test(what, async () => {
      const full: TestLogOptions = { format: 'dovecot', file: await logFile('usage.log', []), ...opts };
      await assert.rejects(run(full), (e: unknown) => e instanceof RelaygateError && e.code === 'RG_ERR_USAGE' && want.test(e.message));
    });
  }
});
