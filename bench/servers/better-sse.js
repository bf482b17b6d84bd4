"use strict";
// Comparison server: Express 5 + better-sse, one better-sse Channel per topic,
// channel.broadcast() per event. Same routes and tokens as the protocol
// (npm branca + msgpack, verified on subscribe and submit).
// Data is sent as-is (identity serializer instead of better-sse's default
// JSON.stringify), keep-alive comment every 30 s like the protocol's heartbeat;
// better-sse's other defaults (retry:2000 on connect, a random UUID id per
// broadcast) are kept.
//
// env: SSE_SECRET (64 hex), PORT
const express = require("express");
const { createSession, createChannel } = require("better-sse");
const { codec } = require("../lib/tokens");

const tokens = codec(process.env.SSE_SECRET);
const port = Number(process.env.PORT || 8000);
const channels = new Map();
const channel = (t) => {
  let c = channels.get(t);
  if (!c) channels.set(t, (c = createChannel()));
  return c;
};

const app = express();
app.get("/events", async (req, res) => {
  let list;
  try {
    list = tokens.topicsOf(String(req.query.token || ""));
  } catch {
    res.status(401).end();
    return;
  }
  const session = await createSession(req, res, {
    serializer: (d) => String(d),
    keepAlive: 30_000,
    headers: { "Access-Control-Allow-Origin": "*" },
  });
  for (const t of list) channel(t).register(session);
});
app.post("/submit", express.raw({ type: () => true, limit: "8kb" }), (req, res) => {
  let events;
  try {
    events = tokens.eventsOf(Buffer.isBuffer(req.body) ? req.body.toString("latin1").trim() : "");
  } catch {
    res.status(401).end();
    return;
  }
  for (const e of events) channels.get(e.topic)?.broadcast(e.data, e.event);
  res.status(200).end();
});
app.get("/ping", (req, res) => res.status(200).end());

app.listen(port, "127.0.0.1", 4096, () => console.log(`better-sse listening on http://127.0.0.1:${port}`));
process.on("SIGTERM", () => process.exit(0));
