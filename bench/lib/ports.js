"use strict";
/** A free TCP port on 127.0.0.1 (bound, read, released), for the bench scripts. */
const net = require("node:net");

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

module.exports = { freePort };
