"use strict";
/**
 * Preload (`node -r`) for experiments only (bench/storm.js --backlog N): makes
 * `server.listen(port, host, cb)` ask for a listen backlog of STORM_BACKLOG
 * instead of Node's default 511, to show what a larger accept queue does to a
 * reconnect storm without changing the server. The kernel caps it at
 * net.core.somaxconn (4096 here).
 */
const net = require("node:net");

const backlog = Number(process.env.STORM_BACKLOG);
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (backlog > 0 && (typeof args[0] === "number" || typeof args[0] === "string") && typeof args[1] === "string" && typeof args[2] === "function") {
    return listen.call(this, { port: Number(args[0]), host: args[1], backlog }, args[2]);
  }
  return listen.apply(this, args);
};
