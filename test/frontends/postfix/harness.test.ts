// The private-Postfix harness itself (test/helpers/postfix.ts): a client in mynetworks relays through the real
// Postfix to the sink; a stranger gets Postfix's own `554 5.7.1 ... Relay access denied`; stop() leaves no master.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startPostfix } from '../../helpers/postfix.ts';
import { startSink } from '../../helpers/smtp-sink.ts';
import { swaks } from '../../helpers/smtp-swaks.ts';
import { alive } from '../../helpers/proc.ts';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

test('private Postfix: mynetworks relays to the sink, a stranger is refused, stop() ends master', async () => {
  const sink = await startSink();
  const pf = await startPostfix({ relayPort: sink.port });
  let masterPid = 0;
  try {
    assert.match(pf.version, /^3\.\d+/);
    masterPid = Number((await readFile(join(pf.queueDir, 'pid', 'master.pid'), 'utf8')).trim());
    assert.ok(alive(masterPid));
    const ok = await swaks({ port: pf.port, localAddress: '127.0.0.1', from: 'a@local.test', to: 'x@remote.example' });
    assert.match(ok.transcript, /<- {2}250 2\.0\.0 Ok: queued as/);
    const [msg] = await sink.waitFor(1, 10_000);
    assert.deepEqual(msg?.to, ['x@remote.example']);
    await pf.waitForLog(/to=<x@remote\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+.*status=sent/, 10_000);

    const denied = await swaks({ port: pf.port, localAddress: '127.0.0.22', from: 'a@local.test', to: 'x@remote.example' });
    assert.match(denied.transcript, /<\*\* 554 5\.7\.1 <x@remote\.example>: Relay access denied/);
    await pf.waitForLog(/NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.22\]: 554 5\.7\.1/, 5_000);
  } finally {
    const { log } = await pf.stop();
    await sink.close();
    assert.match(log, /stopping the Postfix mail system/);
  }
  assert.equal(alive(masterPid), false);
});
