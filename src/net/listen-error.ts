// The error every listener raises when it cannot bind: one wording for the SMTP gateway, the Postfix policy
// service, socketmap, DRAC, whoson and the HTTP listeners, with the fix for the usual causes.

import { RelaygateError } from '../errors.ts';

/** `what`: the listener ("smtp", "policy", ...); `address`: as configured; `err`: from server.listen(). */
export function listenError(what: string, address: string, err: NodeJS.ErrnoException): RelaygateError {
  const details: string[] = [];
  const port = Number(/:(\d+)$/.exec(address)?.[1]);
  if (err.code === 'EACCES' && Number.isInteger(port) && port > 0 && port < 1024) {
    details.push(`port ${port} is below 1024: run relaygate with the capability CAP_NET_BIND_SERVICE (systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE, as in contrib/systemd/relaygate.service), not as root`);
  } else if (err.code === 'EADDRINUSE') {
    details.push(`another program (or another relaygate) already listens on ${address}: stop it or choose another port`);
  } else if (err.code === 'EADDRNOTAVAIL') {
    details.push(`${address} is not an address of this host: use one of its own addresses (or 127.0.0.1)`);
  } else if (err.code === 'EACCES') {
    details.push(`permission denied: for a unix socket, the relaygate user must be able to write its directory`);
  }
  return new RelaygateError('RG_ERR_CONFIG_INVALID', `${what}: cannot listen on ${address}: ${err.message}`, { cause: err, details });
}
