// contrib/postfix/{policy,socketmap}.{main,master}.cf are what operators paste: each is read by the real
// Postfix's postconf (every line, the commented optional settings included) and must parse without a warning
// into the placement README describes; the relaygate.toml lines quoted in their headers must pass
// `relaygate config check`'s validation. Needs Debian's postfix (CI installs it): missing = failure.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { run } from '../../helpers/proc.ts';
import { requirePostfix } from '../../helpers/postfix.ts';
import { loadConfig, validateConfig } from '../../../src/config/index.ts';

const CONTRIB = resolve(import.meta.dirname, '../../../contrib/postfix');
const dir = await mkdtemp(join(tmpdir(), 'rg-pf-contrib-'));
after(() => rm(dir, { recursive: true, force: true }));

/** The snippet with its commented-out Postfix settings (`#name = ...`) turned on. */
function allOn(text: string): string {
  return text
    .split('\n')
    .map((l) => (/^#[a-z_]+\s*=/.test(l) ? l.slice(1) : l))
    .join('\n');
}

/** The relaygate.toml block quoted in a snippet's header (`#   [policy]` ... up to the next `#` line). */
function tomlBlock(text: string): string {
  const lines = text.split('\n');
  const at = lines.findIndex((l) => l.startsWith('# relaygate.toml:'));
  const out: string[] = [];
  for (const l of lines.slice(at + 1)) {
    if (!l.startsWith('#   ')) break;
    out.push(l.slice(4));
  }
  return out.join('\n') + '\n';
}

async function postconf(main: string, master: string, args: string[]): Promise<{ out: string; err: string }> {
  const d = await mkdtemp(join(dir, 'pc-'));
  await writeFile(join(d, 'main.cf'), `compatibility_level = 3.6\n${main}`);
  await writeFile(join(d, 'master.cf'), master);
  const r = await run('postconf', ['-c', d, ...args], { timeoutMs: 10_000 });
  assert.equal(r.code, 0, r.stderr);
  return { out: r.stdout, err: r.stderr };
}

for (const mode of ['policy', 'socketmap'] as const) {
  test(`contrib/postfix/${mode}.main.cf and ${mode}.master.cf parse cleanly in Postfix; the quoted relaygate.toml validates`, async () => {
    await requirePostfix();
    const main = await readFile(join(CONTRIB, `${mode}.main.cf`), 'utf8');
    const master = await readFile(join(CONTRIB, `${mode}.master.cf`), 'utf8');
    const n = await postconf(allOn(main), master, ['-n']);
    assert.equal(n.err, '', `postconf warned about ${mode}.main.cf:\n${n.err}`);
    const relay = /^smtpd_relay_restrictions = (.*)$/m.exec(n.out)?.[1] ?? '';
    const check = mode === 'policy' ? 'check_policy_service inet:127.0.0.1:10031' : 'check_client_access socketmap:inet:127.0.0.1:10032:grant';
    assert.equal(relay, `permit_mynetworks, permit_sasl_authenticated, ${check}, reject_unauth_destination`);
    const p = await postconf('', master, ['-P']);
    assert.equal(p.err, '', `postconf warned about ${mode}.master.cf:\n${p.err}`);
    assert.match(p.out, new RegExp(`^submission/inet/smtpd_relay_restrictions = permit_sasl_authenticated, ${check.replace(/[.]/g, '\\.')}, reject$`, 'm'));
    const m = await postconf('', master, ['-M']);
    assert.equal(m.err, '');
    assert.match(m.out, /^submission +inet +n +- +y +- +- +smtpd/m);

    const toml = tomlBlock(main);
    assert.match(toml, new RegExp(`^\\[${mode}\\]`, 'm'));
    const file = join(dir, `${mode}.toml`);
    await writeFile(file, `data_dir = ${JSON.stringify(join(dir, 'data'))}\n${toml}`);
    await validateConfig(await loadConfig(file));
  });
}

test('policy.master.cf: DUNNO on port 25, a 4xx on the submission port', async () => {
  const master = await readFile(join(CONTRIB, 'policy.master.cf'), 'utf8');
  const p = await postconf('', master, ['-P']);
  assert.match(p.out, /^smtp\/inet\/smtpd_policy_service_default_action = DUNNO$/m);
  assert.match(p.out, /^submission\/inet\/smtpd_policy_service_default_action = 451 4\.3\.5 /m);
});
