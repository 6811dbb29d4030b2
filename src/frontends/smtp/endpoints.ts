// Parsing of the gateway's network endpoints: `[[listen]] address` and `[smtp] relayhost`, plus the check
// of the whole gateway configuration that must pass before anything listens (gatewayConfigProblems()).
//
// Forms accepted (Postfix spelling where Postfix has one): `127.0.0.1:2525`, `[::1]:2525`, `[127.0.0.1]:25`
// (Postfix's "no MX lookup" brackets), and for relayhost a missing port means 25. Port 0 on a listener
// asks the kernel for a free port (tests). Hosts must be IP address literals: relaygate does no DNS for its
// own endpoints (a resolver outage must not become a relay outage, and tests must never leave loopback).
// Security: the configuration is operator data, but it is still checked strictly so that a typo is a
// start-up error naming the key, never a listener on the wrong interface.

import { isIP } from 'node:net';
import { normalizeIp } from '../../net/index.ts';
import type { Config } from '../../config/index.ts';

export interface Endpoint {
  /** normalized IP literal */
  readonly host: string;
  readonly port: number;
}

/** `host:port`, `[v4]:port`, `[v6]:port`; with defaultPort, also a bare `host` / `[host]`. */
export function parseEndpoint(text: string, opts: { defaultPort?: number; allowPortZero?: boolean } = {}): Endpoint | string {
  if (typeof text !== 'string' || text.trim() !== text || text === '') return 'expected "ip:port" or "[ipv6]:port"';
  let host: string;
  let portText: string | undefined;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (bracket) {
    host = bracket[1]!;
    portText = bracket[2];
  } else {
    const colons = text.split(':').length - 1;
    if (colons > 1) return 'an IPv6 address needs brackets: "[::1]:2525"';
    if (colons === 1) {
      host = text.slice(0, text.indexOf(':'));
      portText = text.slice(text.indexOf(':') + 1);
      if (!/^\d+$/.test(portText)) return `bad port ${JSON.stringify(portText)}`;
    } else {
      host = text;
    }
  }
  if (isIP(host) === 0) return `${JSON.stringify(host)} is not an IP address literal (relaygate does no DNS for its own endpoints)`;
  const ip = normalizeIp(host);
  if (ip === undefined) return `${JSON.stringify(host)} is not a usable IP address`;
  let port: number;
  if (portText === undefined) {
    if (opts.defaultPort === undefined) return 'a port is required ("ip:port")';
    port = opts.defaultPort;
  } else {
    port = Number(portText);
  }
  if (!Number.isInteger(port) || port > 65535 || port < (opts.allowPortZero ? 0 : 1)) return `port out of range: ${portText ?? ''}`;
  return { host: ip, port };
}

/** `127.0.0.1:25` / `[::1]:25` */
export function endpointText(e: { host: string; port: number }): string {
  return e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}

/**
 * Every problem of the gateway's part of the configuration, as `key: problem` lines (empty when fine).
 * startGateway() refuses to start on any of them; `relaygate config check` can call it too.
 */
export function gatewayConfigProblems(config: Config): string[] {
  const problems: string[] = [];
  if (config.listen.length === 0) return problems;
  const seen = new Map<string, number>();
  config.listen.forEach((l, i) => {
    const e = parseEndpoint(l.address, { allowPortZero: true });
    if (typeof e === 'string') {
      problems.push(`listen[${i}].address: ${e}`);
      return;
    }
    const key = endpointText(e);
    const first = seen.get(key);
    if (first !== undefined && e.port !== 0) problems.push(`listen[${i}].address: ${key} is already used by listen[${first}]`);
    else seen.set(key, i);
  });
  const s = config.smtp;
  if (s.relayhost === undefined) {
    problems.push('smtp.relayhost: required when [[listen]] is configured (the gateway keeps no queue: every accepted message goes to the relayhost)');
  } else {
    const r = parseEndpoint(s.relayhost, { defaultPort: 25 });
    if (typeof r === 'string') problems.push(`smtp.relayhost: ${r}`);
  }
  if ((s.tls_cert === undefined) !== (s.tls_key === undefined)) {
    problems.push('smtp.tls_cert / smtp.tls_key: set both (or neither, for a generated self-signed pair)');
  }
  const a = config.auth;
  if (a.backend !== undefined && a.path === undefined) problems.push(`auth.path: required with auth.backend = "${a.backend}"`);
  return problems;
}
