// The floor of Node for the policy benchmark: the least a Node server can do per request — a policy server
// that answers every request `action=DUNNO` and a socketmap server that answers every lookup `NOTFOUND `,
// with no parsing beyond finding the end of a request. Forked with IPC by bench/policy.ts (its own process,
// like the server under test); sends `{ port }` once listening on 127.0.0.1:0. A second argument (µs) makes
// it spin that long per request before answering: the benchmark's calibration rows.
//
// Security: binds 127.0.0.1 only.

import net from 'node:net';

const mode = process.argv[2] === 'socketmap' ? 'socketmap' : 'policy';
/** µs of busy work per request (0 = none): the "trivial server plus work" calibration row */
const spinUs = Number(process.argv[3] ?? 0);
function spin(): void {
  if (spinUs <= 0) return;
  const end = process.hrtime.bigint() + BigInt(Math.round(spinUs * 1000));
  while (process.hrtime.bigint() < end);
}
const DUNNO = Buffer.from('action=DUNNO\n\n');
const NOTFOUND = Buffer.from('9:NOTFOUND ,');

const server = net.createServer((sock) => {
  sock.setNoDelay(true);
  let buf: Buffer = Buffer.alloc(0);
  sock.on('error', () => undefined);
  sock.on('data', (d: Buffer) => {
    buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
    for (;;) {
      if (mode === 'policy') {
        const i = buf.indexOf('\n\n');
        if (i === -1) break;
        buf = buf.subarray(i + 2);
        spin();
        sock.write(DUNNO);
      } else {
        const c = buf.indexOf(58);
        if (c === -1) break;
        const end = c + 1 + Number(buf.toString('latin1', 0, c)) + 1;
        if (buf.length < end) break;
        buf = buf.subarray(end);
        sock.write(NOTFOUND);
      }
    }
  });
});
server.listen(0, '127.0.0.1', () => {
  process.send?.({ port: (server.address() as net.AddressInfo).port });
});
process.on('disconnect', () => process.exit(0));
