"use strict";
// Token helpers for the benchmark: the same Branca + MessagePack encoding the
// wire protocol uses (npm `branca`, `@msgpack/msgpack`), shared by the load
// generator (bench/run.js) and the comparison servers in bench/servers/.
const createBranca = require("branca");
const { encode, decode } = require("@msgpack/msgpack");

function codec(secretHex) {
  if (!/^[0-9a-fA-F]{64}$/.test(secretHex || "")) throw new Error("secret must be 64 hex characters");
  const branca = createBranca(Buffer.from(secretHex, "hex"));
  return {
    subscribeToken: (topics) => branca.encode(Buffer.from(encode({ topics }))),
    submitToken: (events) => branca.encode(Buffer.from(encode({ events }))),
    /** Topics of a subscribe token (throws on a bad token). */
    topicsOf(token) {
      const p = decode(branca.decode(token));
      const topics = Array.isArray(p) ? p[0] : p && p.topics;
      if (!Array.isArray(topics)) throw new Error("payload_invalid");
      return [...new Set(topics.map(String))];
    },
    /** Events of a submit token (throws on a bad token). */
    eventsOf(token) {
      const p = decode(branca.decode(token));
      const events = Array.isArray(p) ? p[0] : p && p.events;
      if (!Array.isArray(events)) throw new Error("payload_invalid");
      return events.map((e) =>
        Array.isArray(e)
          ? { topic: String(e[0]), event: String(e[1]), data: String(e[2]) }
          : { topic: String(e.topic), event: String(e.event), data: String(e.data) },
      );
    },
  };
}

module.exports = { codec };
