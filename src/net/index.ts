// net/: the face of the address helpers. Every IP that enters relaygate goes through normalizeIp().
export { normalizeIp, requireIp } from './normalize-ip.ts';
export { CidrSet, parseCidr, cidrContains, type Cidr } from './cidr.ts';
export { listenError } from './listen-error.ts';
