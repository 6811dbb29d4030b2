// Preloaded (`node --require`) into the second Haraka of the smtp benchmark, and only there: turns on
// TCP_NODELAY for every socket Haraka connects (its smtp_forward connections to the sink). Stock Haraka
// 3.3.4 leaves Nagle's algorithm on and writes the message and the final "." in separate writes, so on
// Linux each forwarded message waits for the receiver's delayed ACK (~40 ms). This variant shows what
// Haraka does without that stall: a figure more favourable to Haraka than its stock behaviour, measured
// beside it. Not part of Haraka; not used for relaygate.
'use strict';
const net = require('node:net');

const origConnect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function connect(...args) {
  this.setNoDelay(true);
  return origConnect.apply(this, args);
};
