"use strict";
// Baseline for the benchmark: the cheapest SSE hub a user could hand-write with
// plain node:http. One Set of responses per topic; every event frame is
// res.write()n to each of them. No ids, no history, no back-pressure handling.
//
// To keep the comparison about the hub and not about auth, it verifies tokens
// the same way the protocol requires (npm branca + msgpack, the codec our
// server uses today): GET /events?token=T (subscribe token) and POST /submit
// with the raw Branca token body. Set BENCH_VERIFY_TOKENS=0 to skip verifying
// subscribe tokens (everyone joins topic "bench").
//
// env: SSE_SECRET (64 hex), PORT
const http = require("node:http");
const { codec } = require("../lib/tokens");

const tokens = codec(process.env.SSE_SECRET);
const verify = process.env.BENCH_VERIFY_TOKENS !== "0";
const port = Number(process.env.PORT || 8000);
const topics = new Map(); // topic -> Set<ServerResponse>
const STREAM_HEADERS = {
  "Content-Type": "text/event-stream",
  "Cache-Control": "no-cache",
  Expires: "0",
  "Access-Control-Allow-Origin": "*",
};

function frame(event, data) {
  return `event:${event.replace(/[\r\n]/g, " ")}\n${data
    .split(/\r\n|\r|\n/)
    .map((l) => `data:${l}\n`)
    .join("")}\n`;
}

function subscribe(req, res, url) {
  let list = ["bench"];
  if (verify) {
    try {
      list = tokens.topicsOf(url.searchParams.get("token") || "");
    } catch {
      res.writeHead(401).end();
      return;
    }
  }
  res.writeHead(200, STREAM_HEADERS);
  res.write(":\n\n");
  for (const t of list) {
    let set = topics.get(t);
    if (!set) topics.set(t, (set = new Set()));
    set.add(res);
  }
  res.on("close", () => {
    for (const t of list) topics.get(t)?.delete(res);
  });
}

function submit(req, res) {
  const chunks = [];
  let size = 0;
  req.on("data", (c) => {
    size += c.length;
    if (size > 8192) {
      res.writeHead(413).end();
      req.destroy();
    } else chunks.push(c);
  });
  req.on("end", () => {
    if (size > 8192) return;
    let events;
    try {
      events = tokens.eventsOf(Buffer.concat(chunks).toString("latin1").trim());
    } catch {
      res.writeHead(401).end();
      return;
    }
    for (const e of events) {
      const set = topics.get(e.topic);
      if (!set) continue;
      const f = frame(e.event, e.data);
      for (const r of set) r.write(f);
    }
    res.writeHead(200, { "Content-Length": "0" }).end();
  });
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  if (req.method === "GET" && url.pathname === "/events") return subscribe(req, res, url);
  if (req.method === "POST" && url.pathname === "/submit") return submit(req, res);
  if (url.pathname === "/ping") return res.writeHead(200, { "Content-Length": "0" }).end();
  res.writeHead(404).end();
});

setInterval(() => {
  for (const set of topics.values()) for (const r of set) r.write(":\n\n");
}, 30_000).unref();

server.listen(port, "127.0.0.1", 4096, () => console.log(`baseline listening on http://127.0.0.1:${port}`));
process.on("SIGTERM", () => process.exit(0));
