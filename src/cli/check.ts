// `relaygate check`: what would the engine say to this client, sender and recipient right now?
// Runs MAIL (sender_restrictions) then RCPT (relay_restrictions) against the live map, exactly as a front
// end would, and prints each verdict with its trace and the log line the daemon would write.
// Exit status: 0 permit, 1 reject, 2 defer (temporary). Security: the client IP is normalized first;
// `unknown`, hostnames and zone ids are usage errors, not clients.

import { requireIp } from '../net/index.ts';
import { silentLogger } from '../log/logger.ts';
import type { Decision, DecisionRequest } from '../engine/index.ts';
import { openRuntime } from './runtime.ts';
import { iso, printJson } from './output.ts';

export interface CheckOptions {
  config?: string;
  client: string;
  rcpt: string;
  sender?: string;
  saslUser?: string;
  helo?: string;
  json?: boolean;
}

const EXIT = { permit: 0, reject: 1, defer: 2 } as const;

export async function checkCommand(opts: CheckOptions): Promise<void> {
  const clientIp = requireIp(opts.client, 'client IP');
  const rt = await openRuntime(opts.config, silentLogger());
  try {
    const engine = await rt.engine();
    const now = rt.clock();
    const base: Omit<DecisionRequest, 'stage'> = {
      clientIp,
      clientName: 'unknown',
      helo: opts.helo ?? 'unknown',
      protocol: 'ESMTP',
      sender: opts.sender ?? '',
      now,
      ...(opts.saslUser !== undefined && opts.saslUser !== '' ? { saslUser: opts.saslUser, saslMethod: 'PLAIN' } : {}),
    };
    const decisions: Array<{ stage: 'MAIL' | 'RCPT'; decision: Decision }> = [];
    // Postfix has no recipient at MAIL: the sender restrictions see only the client and the sender.
    const mail = await engine.decide({ ...base, stage: 'mail' });
    decisions.push({ stage: 'MAIL', decision: mail });
    if (mail.action === 'permit') decisions.push({ stage: 'RCPT', decision: await engine.decide({ ...base, stage: 'rcpt', recipient: opts.rcpt }) });
    const final = decisions[decisions.length - 1]!.decision;

    if (opts.json) {
      printJson({
        client: clientIp,
        result: final.action,
        stages: decisions.map(({ stage, decision: d }) => ({
          stage,
          action: d.action,
          reply: reply(d),
          decided_by: d.decidedBy,
          trace: d.trace,
          grant: d.grant ? { ...d.grant, expires: iso(d.grant.expires) } : null,
          log: d.logLine,
        })),
      });
    } else {
      const out: string[] = [];
      for (const { stage, decision: d } of decisions) {
        out.push(`${stage}: ${d.action.toUpperCase()}${d.decidedBy ? ` by ${d.decidedBy}` : ' (no restriction decided: end of list)'}${reply(d) ? ` — ${reply(d)}` : ''}`);
        for (const t of d.trace) out.push(`  ${t.restriction.padEnd(44)} ${t.result}${t.detail ? `  ${t.detail}` : ''}`);
        out.push(`  log: ${d.logLine}`);
      }
      out.push(`result: ${final.action}`);
      process.stdout.write(`${out.join('\n')}\n`);
    }
    process.exitCode = EXIT[final.action];
  } finally {
    await rt.close();
  }
}

function reply(d: Decision): string {
  return d.code === null ? '' : [d.code, d.dsn, d.text].filter((x) => x !== null && x !== '').join(' ');
}
