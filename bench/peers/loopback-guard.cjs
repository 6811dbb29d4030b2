// Preloaded (`node --require`) into the peers the smtp benchmark starts (Haraka, the relaygate gateway):
// makes sure nothing they do leaves loopback. DNS (lookup, reverse, resolve*, the promises API and
// Resolver objects) fails with ENOTFOUND without a packet sent, unless the name is an IP literal or
// localhost; TCP connects and UDP sends to a non-loopback address throw. Each block is reported once on
// stderr as `loopback-guard: blocked ...`, so a benchmark can tell the peer tried.
// Plain CommonJS so it loads before tsx or Haraka, with no build step.
'use strict';
const dns = require('node:dns');
const net = require('node:net');
const dgram = require('node:dgram');
const { syncBuiltinESMExports } = require('node:module');

const seen = new Set();
function report(what) {
  if (seen.has(what)) return;
  seen.add(what);
  process.stderr.write(`loopback-guard: blocked ${what}\n`);
}

function isLoopback(host) {
  if (typeof host !== 'string') return false;
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  if (/^::ffff:127\./.test(h)) return true;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

function notFound(syscall, name) {
  const err = new Error(`${syscall} ENOTFOUND ${name} (loopback-guard: no DNS in benchmarks)`);
  err.code = dns.NOTFOUND;
  err.syscall = syscall;
  err.hostname = name;
  return err;
}

const origLookup = dns.lookup;
dns.lookup = function lookup(hostname, options, callback) {
  const cb = typeof options === 'function' ? options : callback;
  const opts = typeof options === 'object' && options !== null ? options : {};
  if (net.isIP(hostname) !== 0 || hostname === 'localhost') return origLookup.call(dns, hostname, options, callback);
  report(`dns.lookup(${hostname})`);
  process.nextTick(() => cb(notFound('getaddrinfo', hostname), opts.all ? [] : undefined));
  return {};
};

const RESOLVERS = ['reverse', 'resolve', 'resolve4', 'resolve6', 'resolveAny', 'resolveCname', 'resolveCaa', 'resolveMx', 'resolveNaptr', 'resolveNs', 'resolvePtr', 'resolveSoa', 'resolveSrv', 'resolveTxt', 'lookupService'];
function blockedCallback(name) {
  return function blocked(arg, ...rest) {
    const cb = rest.reverse().find((x) => typeof x === 'function');
    report(`dns.${name}(${arg})`);
    if (cb) process.nextTick(() => cb(notFound(name, arg)));
  };
}
function blockedPromise(name) {
  return function blocked(arg) {
    report(`dns.promises.${name}(${arg})`);
    return Promise.reject(notFound(name, arg));
  };
}
for (const name of RESOLVERS) {
  if (typeof dns[name] === 'function') dns[name] = blockedCallback(name);
  if (dns.Resolver && typeof dns.Resolver.prototype[name] === 'function') dns.Resolver.prototype[name] = blockedCallback(name);
  if (dns.promises && typeof dns.promises[name] === 'function') dns.promises[name] = blockedPromise(name);
  if (dns.promises && dns.promises.Resolver && typeof dns.promises.Resolver.prototype[name] === 'function') dns.promises.Resolver.prototype[name] = blockedPromise(name);
}
if (dns.promises) {
  const origPLookup = dns.promises.lookup;
  dns.promises.lookup = function lookup(hostname, options) {
    if (net.isIP(hostname) !== 0 || hostname === 'localhost') return origPLookup.call(dns.promises, hostname, options);
    report(`dns.promises.lookup(${hostname})`);
    return Promise.reject(notFound('getaddrinfo', hostname));
  };
}

const origConnect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function connect(...args) {
  const first = args[0];
  let host;
  if (Array.isArray(first)) host = first[0] && first[0].host;
  else if (typeof first === 'object' && first !== null) host = first.path === undefined ? first.host || 'localhost' : undefined;
  else if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) host = typeof args[1] === 'string' ? args[1] : 'localhost';
  if (host !== undefined && !isLoopback(host)) {
    report(`tcp connect to ${host}`);
    throw new Error(`loopback-guard: connect to ${host} refused (benchmarks stay on loopback)`);
  }
  return origConnect.apply(this, args);
};

const origSend = dgram.Socket.prototype.send;
dgram.Socket.prototype.send = function send(...args) {
  // send(msg[, offset, length][, port][, address][, callback]): the address is the last string argument
  const address = args.filter((a) => typeof a === 'string').pop();
  if (!isLoopback(address || 'localhost')) {
    report(`udp send to ${address}`);
    throw new Error(`loopback-guard: udp to ${address} refused (benchmarks stay on loopback)`);
  }
  return origSend.apply(this, args);
};

syncBuiltinESMExports();
