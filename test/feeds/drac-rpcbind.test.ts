// DRAC with real parts end to end: a real `relaygate run` registers with a real rpcbind (Debian `rpcbind`),
// `rpcinfo -p` lists program 900101 for versions 1 and 2 over UDP and TCP, and a real ONC RPC client —
// built here from drac.x with rpcgen (Debian `rpcsvc-proto`) and libtirpc (Debian `libtirpc-dev`), like the
// clients qpopper or the Dovecot DRAC plugin link — looks the server up through rpcbind (clnt_create) and
// ADDs IPv4 (v1) and IPv6 (v2) addresses over both transports. The grants are then visible through
// `relaygate map list`. SIGTERM: the daemon unregisters, and rpcinfo no longer lists 900101.
// rpcbind is started by the test when none runs (and stopped again); a missing package FAILS the test
// (CI installs them in .ci/run), it never skips.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { access, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { run, runOk, waitExit, pollFor, alive } from '../helpers/proc.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'src/main.ts');
const TSX = import.meta.resolve('tsx');

// The protocol definition as DRAC 1.12 ships it (drac.x: struct drac_add_parm { unsigned long ip_addr; },
// enum addstat, program DRACPROG 900101 version DRACVERS 1), plus version 2 from Debian's IPv6 patch, whose
// argument is `char ip_addr6[16]` (rpcgen encodes each char as one XDR int). `unsigned int` stands for
// DRAC's `unsigned long`: both are one 4-byte XDR unsigned int on the wire.
const DRAC_X = `/* Dynamic Relay Authorization Control (DRAC 1.12 drac.x, with Debian's IPv6 version) */
struct drac_add_parm {
	unsigned int ip_addr;	/* host byte order here, network order on the wire */
};
struct drac_add_parm6 {
	char ip_addr6[16];
};
enum addstat {
	ADD_SUCCESS = 0,	/* Succeeded */
	ADD_PERM = 1,		/* Permission denied */
	ADD_SYSERR = 2,		/* System error */
	ADD_UNKNOWN = 3		/* Unknown */
};
program DRACPROG {
	version DRACVERS {
		addstat DRACPROC_ADD(drac_add_parm) = 1;
	} = 1;
	version DRACVERS6 {
		addstat DRACPROC_ADD6(drac_add_parm6) = 1;
	} = 2;
} = 900101;
`;

// The client does what DRAC's dracauth() does: clnt_create(server, DRACPROG, version, transport) — which
// asks the portmapper for the port — then one ADD. Output: `result=N`, or an RPC error on stderr.
const CLIENT_C = `#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include "drac.h"

int main(int argc, char **argv) {
	if (argc != 5) { fprintf(stderr, "usage: %s server udp|tcp 1|2 address\\n", argv[0]); return 64; }
	const char *server = argv[1], *proto = argv[2], *addr = argv[4];
	int vers = atoi(argv[3]);
	CLIENT *clnt = clnt_create(server, DRACPROG, vers == 2 ? DRACVERS6 : DRACVERS, proto);
	if (clnt == NULL) { fprintf(stderr, "%s\\n", clnt_spcreateerror(server)); return 2; }
	struct timeval tv = { 5, 0 };
	clnt_control(clnt, CLSET_TIMEOUT, (char *)&tv);
	addstat *result;
	if (vers == 2) {
		drac_add_parm6 arg;
		if (inet_pton(AF_INET6, addr, arg.ip_addr6) != 1) { fprintf(stderr, "bad IPv6 address\\n"); return 64; }
		result = dracproc_add6_2(&arg, clnt);
	} else {
		drac_add_parm arg;
		struct in_addr in;
		if (inet_pton(AF_INET, addr, &in) != 1) { fprintf(stderr, "bad IPv4 address\\n"); return 64; }
		arg.ip_addr = ntohl(in.s_addr); /* to host byte order, as dracauth() does */
		result = dracproc_add_1(&arg, clnt);
	}
	if (result == NULL) { fprintf(stderr, "%s\\n", clnt_sperror(clnt, "call failed")); clnt_destroy(clnt); return 3; }
	printf("result=%d\\n", (int)*result);
	clnt_destroy(clnt);
	return 0;
}
`;

let dir: string;
let client: string;
let rpcbind: ChildProcess | undefined;
let locked = false;

// The portmapper is one per host and program 900101 one per portmapper: two runs of this test at once (two
// checkouts testing on one machine) would unregister each other. A lock file serializes them (bounded wait;
// a lock whose owner died is taken over).
const LOCK = join(tmpdir(), 'relaygate-drac-rpcbind-test.lock');

async function lock(timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 10_000 && Date.now() < deadline; i++) {
    try {
      const fh = await open(LOCK, 'wx');
      await fh.writeFile(String(process.pid));
      await fh.close();
      locked = true;
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number(await readFile(LOCK, 'utf8').catch(() => ''));
      if (Number.isInteger(owner) && owner > 0 && !alive(owner)) await rm(LOCK, { force: true });
      else await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new Error(`${LOCK} held by another run for ${timeoutMs} ms`);
}

async function which(cmd: string): Promise<string | undefined> {
  for (const d of ['/usr/sbin', '/usr/bin', '/sbin', '/bin', '/usr/local/sbin', '/usr/local/bin']) {
    try {
      await access(join(d, cmd), constants.X_OK);
      return join(d, cmd);
    } catch {
      // next
    }
  }
  return undefined;
}

async function rpcinfo(): Promise<string> {
  return (await runOk('rpcinfo', ['-p', '127.0.0.1'], { timeoutMs: 10_000 })).stdout;
}

before(async () => {
  const missing: string[] = [];
  for (const [cmd, pkg] of [['rpcbind', 'rpcbind'], ['rpcinfo', 'rpcbind'], ['rpcgen', 'rpcsvc-proto'], ['gcc', 'gcc']] as const) {
    if ((await which(cmd)) === undefined) missing.push(`${cmd} (Debian package ${pkg})`);
  }
  try {
    await access('/usr/include/tirpc/rpc/rpc.h');
  } catch {
    missing.push('/usr/include/tirpc (Debian package libtirpc-dev)');
  }
  assert.deepEqual(missing, [], `install the missing tools (apt-get install -y rpcbind rpcsvc-proto libtirpc-dev gcc libc6-dev): ${missing.join(', ')}`);

  await lock(120_000);
  dir = await mkdtemp(join(tmpdir(), 'rg-drac-rpcbind-'));
  // A portmapper: use the running one, else start rpcbind in the foreground (-f) as our child.
  const probe = await run('rpcinfo', ['-p', '127.0.0.1'], { timeoutMs: 5000 });
  if (probe.code !== 0) {
    rpcbind = spawn('rpcbind', ['-f', '-w'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    rpcbind.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const up = await pollFor(async () => ((await run('rpcinfo', ['-p', '127.0.0.1'], { timeoutMs: 2000 })).code === 0 ? true : undefined), 10_000, 100);
    assert.ok(up, `rpcbind did not come up: ${err || `exit ${rpcbind.exitCode}`}`);
  }

  // Build the real client from drac.x: rpcgen's header, client stubs and XDR routines, linked with libtirpc.
  await writeFile(join(dir, 'drac.x'), DRAC_X);
  await writeFile(join(dir, 'client.c'), CLIENT_C);
  await runOk('rpcgen', ['-C', '-h', '-o', join(dir, 'drac.h'), join(dir, 'drac.x')]);
  await runOk('rpcgen', ['-C', '-l', '-o', join(dir, 'drac_clnt.c'), join(dir, 'drac.x')]);
  await runOk('rpcgen', ['-C', '-c', '-o', join(dir, 'drac_xdr.c'), join(dir, 'drac.x')]);
  client = join(dir, 'drac-client');
  await runOk('gcc', ['-I/usr/include/tirpc', `-I${dir}`, '-o', client, join(dir, 'client.c'), join(dir, 'drac_clnt.c'), join(dir, 'drac_xdr.c'), '-ltirpc'], { timeoutMs: 60_000 });
});

after(async () => {
  if (rpcbind && rpcbind.exitCode === null) {
    rpcbind.kill('SIGTERM');
    if (!(await waitExit(rpcbind, 5000))) rpcbind.kill('SIGKILL');
  }
  if (dir) await rm(dir, { recursive: true, force: true });
  if (locked) await rm(LOCK, { force: true });
});

interface LogLine {
  event?: string;
  [k: string]: unknown;
}

test('a real rpcgen/libtirpc DRAC client finds relaygate through rpcbind and its ADDs become grants; stop unregisters', async () => {
  // A stale registration (an earlier crashed run) must not matter: relaygate UNSETs before it SETs.
  const conf = join(dir, 'relaygate.toml');
  await writeFile(
    conf,
    [
      `data_dir = ${JSON.stringify(join(dir, 'data'))}`,
      'mynetworks = ["127.0.0.0/8"]',
      '[drac]',
      'listen_udp = ["127.0.0.1:0"]',
      'listen_tcp = ["127.0.0.1:0"]',
      'allow = ["127.0.0.1/32"]',
      'rpcbind = true',
      '',
    ].join('\n'),
  );
  const daemon = spawn(process.execPath, ['--import', TSX, MAIN, 'run', '-c', conf], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: LogLine[] = [];
  let stderr = '';
  let buf = '';
  daemon.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    for (const p of parts) if (p.trim() !== '') lines.push(JSON.parse(p) as LogLine);
  });
  daemon.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  try {
    const registered = await pollFor(() => lines.find((l) => l.event === 'drac_registered'), 20_000);
    assert.ok(registered, `no drac_registered line; stderr: ${stderr}; log: ${JSON.stringify(lines.slice(-5))}`);
    const udpPort = Number(lines.find((l) => l.event === 'drac_listening' && l.transport === 'udp')?.port);
    const tcpPort = Number(lines.find((l) => l.event === 'drac_listening' && l.transport === 'tcp')?.port);
    assert.ok(udpPort > 0 && tcpPort > 0);

    // rpcinfo -p: program 900101, versions 1 and 2, udp and tcp, at the daemon's ports
    const listing = await rpcinfo();
    const rows = listing
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f[0] === '900101')
      .map((f) => `${f[1]} ${f[2]} ${f[3]}`)
      .sort();
    assert.deepEqual(rows, [`1 tcp ${tcpPort}`, `1 udp ${udpPort}`, `2 tcp ${tcpPort}`, `2 udp ${udpPort}`], listing);

    // the real client: v1 and v2, over UDP and TCP, each looked up through rpcbind
    const calls: Array<[string, string, string]> = [
      ['udp', '1', '192.0.2.71'],
      ['tcp', '1', '192.0.2.72'],
      ['udp', '2', '2001:db8::71'],
      ['tcp', '2', '2001:db8:ffff::fe72'],
    ];
    for (const [proto, vers, addr] of calls) {
      const r = await run(client, ['127.0.0.1', proto, vers, addr], { timeoutMs: 20_000 });
      assert.equal(r.code, 0, `client ${proto} v${vers} ${addr}: ${r.stderr}`);
      assert.equal(r.stdout.trim(), 'result=0', `ADD_SUCCESS for ${addr} over ${proto} v${vers}`);
    }
    // NULL procedure through rpcinfo itself (rpcinfo -T udp/tcp 127.0.0.1 900101 VERSION pings procedure 0)
    for (const t of ['udp', 'tcp']) {
      for (const v of ['1', '2']) {
        const ping = await run('rpcinfo', ['-T', t, '127.0.0.1', '900101', v], { timeoutMs: 10_000 });
        assert.equal(ping.code, 0, `rpcinfo -T ${t} 900101 ${v}: ${ping.stderr}${ping.stdout}`);
        assert.match(ping.stdout, /ready and waiting/);
      }
    }

    // the grants, through the operator's own command (a second process reading the same LMDB map)
    const list = await runOk(process.execPath, ['--import', TSX, MAIN, 'map', 'list', '--json', '-c', conf], { timeoutMs: 30_000 });
    const grants = JSON.parse(list.stdout) as Array<{ ip: string; source: string; user: string | null }>;
    assert.deepEqual(
      grants.map((g) => `${g.ip} ${g.source} ${g.user}`).sort(),
      ['192.0.2.71 drac null', '192.0.2.72 drac null', '2001:db8::71 drac null', '2001:db8:ffff::fe72 drac null'],
    );
    assert.equal(lines.filter((l) => l.event === 'drac_add' && l.caller_ip === '127.0.0.1').length, 4);
  } finally {
    daemon.kill('SIGTERM');
    assert.equal(await waitExit(daemon, 15_000), true, 'daemon stops on SIGTERM');
  }
  assert.equal(daemon.exitCode, 0, stderr);
  assert.ok(lines.some((l) => l.event === 'drac_unregistered'));
  assert.doesNotMatch(await rpcinfo(), /\b900101\b/, 'unregistered at stop');
});
