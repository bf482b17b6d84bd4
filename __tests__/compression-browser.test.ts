/**
 * `compression: true` with real clients (issue 16): Chromium's EventSource
 * receives gzip-coded events promptly, directly and through nginx configured
 * with `gzip on` for `text/event-stream` (the setting DEPLOY.md warns about):
 * our `Content-Encoding: gzip` stops nginx from compressing again, so what
 * comes out of nginx is our member, decoded by Python byte for byte.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import type { Page } from "playwright-core";
import { subscribeToken } from "../src/tokens";
import { launchChromium, type Chromium } from "./helpers/chromium";
import { requireNginx } from "./helpers/nginx";
import { PyGunzip } from "./helpers/pygunzip";
import { SECRET, eventually, startServer, type TestServer } from "./helpers/sse";

const PROMPT_MS = 2_000;
let srv: TestServer;
let browser: Chromium;
let nginx: ChildProcess;
let nginxBase: string;
let runDir: string;
const nginxLog = () => fs.readFileSync(path.join(runDir, "error.log"), "utf8");

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1", () => {
      s.destroy();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });
}

beforeAll(async () => {
  srv = await startServer({ retry: 0, compression: true }, "/", (app) => {
    app.get("/page", (_req, res) => {
      res.type("html").send("<!doctype html><title>gz</title>");
    });
  });
  const bin = requireNginx();
  runDir = fs.mkdtempSync(path.join(os.tmpdir(), "sse-gzip-nginx-"));
  fs.chmodSync(runDir, 0o755);
  const port = await freePort();
  fs.writeFileSync(
    path.join(runDir, "nginx.conf"),
    `daemon off;
worker_processes 1;
pid ${runDir}/nginx.pid;
error_log ${runDir}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${runDir}/cb; proxy_temp_path ${runDir}/p; fastcgi_temp_path ${runDir}/f; uwsgi_temp_path ${runDir}/u; scgi_temp_path ${runDir}/s;
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://127.0.0.1:${srv.port};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      # What DEPLOY.md says not to do for the stream: it must still be safe.
      gzip on;
      gzip_types text/event-stream;
      gzip_proxied any;
      gzip_min_length 0;
    }
  }
}
`,
  );
  nginx = spawn(bin, ["-p", runDir, "-c", path.join(runDir, "nginx.conf"), "-e", path.join(runDir, "error.log")], { stdio: "ignore" });
  nginxBase = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  while (!(await connects(port))) {
    if (Date.now() > deadline) throw new Error(`nginx is not listening: ${nginxLog()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  nginx?.kill("SIGTERM");
  await srv?.close();
  if (runDir) fs.rmSync(runDir, { recursive: true, force: true });
});

// Callbacks passed to page.evaluate/waitForFunction run in the page. The
// project is type-checked without the DOM lib, so describe what they touch.
interface PageEvent {
  data: string;
}
declare const window: { got: string[] };
declare const EventSource: new (url: string) => { addEventListener(type: string, listener: (e: PageEvent) => void): void };

/** Opens an EventSource in a page served by `base`; returns the page and the stream's response headers. */
async function openEventSource(base: string, topic: string): Promise<{ page: Page; headers: Record<string, string> }> {
  const page = await browser.context.newPage();
  const token = subscribeToken(SECRET, [topic]);
  const response = page.waitForResponse((r) => r.url().includes("/events?"));
  await page.goto(`${base}/page`);
  await page.evaluate((src) => {
    window.got = [];
    const es = new EventSource(src);
    es.addEventListener("tick", (e) => window.got.push(e.data));
  }, `/events?token=${token}`);
  const headers = (await response).headers();
  return { page, headers };
}

test.each([
  ["directly", () => srv.base],
  ["through nginx with gzip on", () => nginxBase],
])("Chromium's EventSource gets gzip-coded events promptly, %s", async (_name, base) => {
  const topic = `b${Math.random().toString(36).slice(2)}`;
  const { page, headers } = await openEventSource(base(), topic);
  expect(headers["content-encoding"]).toBe("gzip");
  // Wait for the subscription to exist before publishing (no sleeping).
  await eventually(() => srv.router.stats.subscribers >= 1, 5000, "subscriber");
  for (let i = 0; i < 30; i++) {
    await srv.router.publish([{ topic, event: "tick", data: JSON.stringify({ i, symbol: "BTC-USD", price: 100 + i / 8 }) }]);
    // Each event is decoded by the browser from what arrived: no compressor holds it.
    await page.waitForFunction((n) => window.got.length >= n, i + 1, { timeout: PROMPT_MS });
  }
  const got = await page.evaluate(() => window.got);
  expect(got.map((d: string) => (JSON.parse(d) as { i: number }).i)).toEqual(Array.from({ length: 30 }, (_, i) => i));
  await page.close();
});

test("nginx with gzip on passes our member through unchanged: one Content-Encoding, Python decodes it event by event", async () => {
  const py = new PyGunzip();
  const topic = "through";
  let text = "";
  let chain = Promise.resolve();
  const req = http.get(`${nginxBase}/events?token=${subscribeToken(SECRET, [topic])}`, { headers: { "Accept-Encoding": "gzip" }, agent: false });
  const res = await new Promise<http.IncomingMessage>((resolve) => req.on("response", resolve));
  expect(res.headers["content-encoding"]).toBe("gzip");
  res.on("data", (d: Buffer) => {
    chain = chain.then(async () => {
      text += (await py.feed("n", d)).toString();
    });
  });
  await eventually(() => text === ":\n\n", 5000, "heartbeat through nginx");
  for (let i = 0; i < 5; i++) {
    await srv.router.publish([{ topic, event: "e", data: `n${i}` }]);
    await eventually(() => text.includes(`data:n${i}\n`), PROMPT_MS, `event ${i} through nginx`);
  }
  req.destroy();
  py.close();
});
