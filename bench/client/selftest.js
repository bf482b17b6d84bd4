#!/usr/bin/env node
"use strict";
/*
 * Self-test of the load client's parsers (run by bench/run.js before any
 * measurement, or alone: node bench/client/selftest.js [path/to/loadclient]).
 * A raw TCP server sends byte-exact responses, split at every byte or in one
 * piece, chunked and not; the client must count exactly the events (frames
 * with a data line), read their timestamps, and parse publisher responses
 * with Content-Length and chunked bodies. Then storm mode (stormTest below).
 */
const net = require("node:net");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { spawn, spawnSync } = require("node:child_process");
const readline = require("node:readline");

// 3 events: ts 5, 7 and 9 (a quoted value, then a second data line); the
// rest (heartbeat, retry, comment, a field that only looks like data) is not.
const BODY =
  ":\n\nretry:1000\n\nevent:x\ndata:5\nid:1\n\ndatax:1\n\ndata: 7\r\n\r\nevent:y\ndata:\"9\"\ndata:second\nid:3\n\n: comment\n\n";
const EXPECTED_EVENTS = 3;

function chunked(s) {
  // one chunk per frame, then the pieces are written byte by byte or at once
  return s
    .split(/(?<=\n\n)/)
    .map((p) => `${Buffer.byteLength(p).toString(16)}\r\n${p}\r\n`)
    .join("");
}

/** The client process, and `cmd(line)`: send a command (none: just read), resolve with its JSON reply. */
function startClient(bin, port) {
  const client = spawn(bin, [String(port)], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = readline.createInterface({ input: client.stdout })[Symbol.asyncIterator]();
  const cmd = async (c) => {
    if (c) client.stdin.write(c + "\n");
    const { value } = await lines.next();
    return JSON.parse(value);
  };
  return { client, cmd };
}

async function main(binArg) {
  let bin = binArg;
  let tmp;
  if (!bin) {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "loadclient-test-"));
    bin = path.join(tmp, "loadclient");
    const r = spawnSync("gcc", ["-O2", "-Wall", "-o", bin, path.join(__dirname, "loadclient.c")], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(r.stderr);
  }
  let conn = 0;
  let pubs = 0;
  const server = net.createServer((sock) => {
    sock.setNoDelay(true);
    let buf = "";
    sock.on("data", async (d) => {
      buf += d.toString("latin1");
      while (buf.includes("\r\n\r\n")) {
        const head = buf.slice(0, buf.indexOf("\r\n\r\n"));
        const len = Number((/content-length: (\d+)/i.exec(head) || [0, 0])[1]);
        if (buf.length < head.length + 4 + len) return;
        buf = buf.slice(head.length + 4 + len);
        if (head.startsWith("POST")) {
          pubs++;
          sock.write(
            pubs % 2
              ? "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"
              : "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nOK\r\n3\r\n ok\r\n0\r\n\r\n",
          );
          continue;
        }
        const mode = conn++ % 3; // 0: chunked byte by byte, 1: chunked at once, 2: plain byte by byte
        const out =
          "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" +
          (mode === 2 ? "\r\n" + BODY : "Transfer-Encoding: chunked\r\n\r\n" + chunked(BODY));
        if (mode === 1) sock.write(out);
        else
          for (const ch of out) {
            sock.write(ch, "latin1");
            await new Promise((r) => setTimeout(r, 1));
          }
      }
    });
    sock.on("error", () => {});
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const port = server.address().port;
  const dir = tmp || fs.mkdtempSync(path.join(os.tmpdir(), "loadclient-test-"));
  fs.writeFileSync(path.join(dir, "paths"), "/events?token=a\n/events?token=b\n");
  const body = "x".repeat(10);
  fs.writeFileSync(
    path.join(dir, "req"),
    `POST /submit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
  );
  const { client, cmd } = startClient(bin, port);
  const fail = [];
  const check = (cond, what) => {
    if (!cond) fail.push(what);
  };
  try {
    await cmd(); // ready
    await cmd(`paths ${path.join(dir, "paths")}`);
    await cmd("lat on");
    const con = await cmd("connect sub 6 6 5000");
    check(con.ok === 6, `connect: ${JSON.stringify(con)}`);
    const dr = await cmd(`drain ${EXPECTED_EVENTS} 5000 2000`);
    check(dr.why === "complete", `drain did not complete: ${JSON.stringify(dr)}`);
    check(dr.min_frames === EXPECTED_EVENTS && dr.max_frames === EXPECTED_EVENTS, `frames per subscriber: ${JSON.stringify(dr)}`);
    const lat = await cmd("latreport");
    check(lat.count === 6 * EXPECTED_EVENTS, `latency samples ${lat.count}, want ${6 * EXPECTED_EVENTS}`);
    const pub = await cmd(`pub 2 300 0 ${path.join(dir, "req")}`);
    check(pub.ok > 10 && pub.bad === 0 && pub.unanswered === 0, `publisher: ${JSON.stringify(pub)}`);
    check(pub.ok === pubs, `publisher counted ${pub.ok} answers, server sent ${pubs}`);
    await cmd("quit");
  } finally {
    client.kill();
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  if (fail.length) throw new Error("load client self-test FAILED:\n- " + fail.join("\n- "));
  await stormTest(bin);
}

/*
 * Storm mode (bench/storm.js): one subscriber; its first stream tells it `retry:300`, two ids and
 * events 0 and 1, then ends. It must come back after ~300 ms with `Last-Event-ID: b`; the second
 * stream (byte by byte) sends sse:reset, 5, 5 again, 4, a comment, and 7 (two data lines): the
 * client must count one reset covering 2..4, one duplicate, one reordered, and 6 lost.
 */
async function stormTest(bin) {
  let closedAt = 0;
  const seen = [];
  const server = net.createServer((sock) => {
    let buf = "";
    sock.on("data", async (d) => {
      buf += d.toString("latin1");
      if (!buf.includes("\r\n\r\n")) return;
      const head = buf;
      buf = "";
      const k = seen.length;
      seen.push({ at: Date.now(), lastEventId: (/\r\nLast-Event-ID: ([^\r]*)/i.exec(head) || [])[1] });
      const ok = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n";
      if (k === 0) {
        sock.write(ok + "Transfer-Encoding: chunked\r\n\r\n" + chunked(":\n\nretry:300\n\nid:a\ndata:0\n\nid:b\r\ndata: 1\r\n\r\n"));
        await new Promise((r) => setTimeout(r, 300)); // after the client's `sreconnect`
        sock.end("0\r\n\r\n");
        closedAt = Date.now();
        return;
      }
      const body = 'event:sse:reset\ndata:{"reason":"unknown_id"}\n\nid:x\ndata:5\n\ndata:5\n\ndata:4\n\n: c\n\nevent:tick\ndata:7\ndata:more\n\n';
      for (const ch of ok + "\r\n" + body) {
        sock.write(ch, "latin1");
        await new Promise((r) => setTimeout(r, 1));
      }
    });
    sock.on("error", () => {});
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "loadclient-storm-"));
  fs.writeFileSync(path.join(dir, "paths"), "/events?token=a\n");
  const { client, cmd } = startClient(bin, server.address().port);
  const fail = [];
  try {
    await cmd(); // ready
    await cmd("storm on 1");
    await cmd(`paths ${path.join(dir, "paths")}`);
    const con = await cmd("connect sub 1 1 5000");
    if (con.ok !== 1) fail.push(`connect: ${JSON.stringify(con)}`);
    await cmd("sreconnect honour 3000 100 0");
    let st;
    const end = Date.now() + 5000;
    do {
      await new Promise((r) => setTimeout(r, 50));
      st = await cmd("sstat");
    } while (st.max_seq < 7 && Date.now() < end);
    const want = { max_seq: 7, resets: 1, reset_covered: 3, dups: 1, reorders: 1, lost: 1, open: 1 };
    for (const [k, v] of Object.entries(want)) if (st[k] !== v) fail.push(`storm ${k} = ${st[k]}, want ${v}`);
    if (seen.length !== 2 || seen[1].lastEventId !== "b") fail.push(`reconnect: ${JSON.stringify(seen)}`);
    else if (seen[1].at - closedAt < 280 || seen[1].at - closedAt > 2000) fail.push(`reconnected ${seen[1].at - closedAt} ms after the end, want ~300 (retry:)`);
    await cmd("quit");
  } finally {
    client.kill();
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  if (fail.length) throw new Error("load client storm self-test FAILED:\n- " + fail.join("\n- "));
}

if (require.main === module) {
  main(process.argv[2]).then(() => console.error("load client self-test passed"), (e) => {
    console.error(e);
    process.exit(1);
  });
}
module.exports = { main };
