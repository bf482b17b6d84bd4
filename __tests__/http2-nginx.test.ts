/**
 * nginx terminating HTTP/2 in front of the plain HTTP/1.1 standalone server,
 * with the server block from the README (section "nginx terminating HTTP/2"),
 * so the documented config is the tested one: many streams and /submit on
 * one h2 connection to nginx, every event on every stream, exact bytes.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { submitToken, subscribeToken } from "../src/tokens";
import { requireNginx } from "./helpers/nginx";
import { freePort } from "./helpers/redis";
import { SECRET, eventually } from "./helpers/sse";
import { makeCertificate, requireCli, startCli, type StartedCli } from "./helpers/tls";

let dir: string;
let server: StartedCli | undefined;
let nginx: ChildProcess | undefined;

afterAll(() => {
  nginx?.kill("SIGKILL");
  server?.child.kill("SIGKILL");
  if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
});

/** The README's server block for this setup, pointed at this test's files and ports. */
function readmeServerBlock(): string {
  const readme = fs.readFileSync(path.join(__dirname, "..", "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("#### nginx terminating HTTP/2"));
  const block = /```nginx\n([\s\S]*?)\n```/.exec(section);
  if (block === null) throw new Error("README: no nginx block under 'nginx terminating HTTP/2'");
  return block[1]!;
}

async function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

test("browsers' h2 to nginx, HTTP/1.1 to the server: 10 streams and /submit on one h2 connection all get every event", async () => {
  const bin = requireNginx();
  requireCli();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "sse-h2-nginx-"));
  fs.chmodSync(dir, 0o755); // as root, nginx workers run as nobody
  const files = makeCertificate(dir);
  fs.chmodSync(files.key, 0o644);
  server = await startCli({ BASE_PATH: "/sse-server/", SSE_RETRY: "0", SSE_HEARTBEAT_INTERVAL: "0" });
  const appPort = new URL(server.url).port;
  const port = await freePort();
  const block = readmeServerBlock()
    .replace("listen 443 ssl http2;", `listen 127.0.0.1:${port} ssl http2;`)
    .replace("/etc/ssl/events.pem", files.cert)
    .replace("/etc/ssl/events.key", files.key)
    .replace("http://127.0.0.1:8000", `http://127.0.0.1:${appPort}`);
  expect(block).toContain(`127.0.0.1:${port} ssl http2`);
  expect(block).toContain(`proxy_pass http://127.0.0.1:${appPort};`);
  fs.writeFileSync(
    path.join(dir, "nginx.conf"),
    `daemon off; worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
${block}
}
`,
  );
  nginx = spawn(bin, ["-p", dir, "-c", path.join(dir, "nginx.conf"), "-e", path.join(dir, "error.log")], { stdio: "ignore" });
  const nginxExit = new Promise<void>((resolve) => nginx!.once("exit", () => resolve()));
  // Ready once its port accepts (bounded poll).
  for (let i = 0; i < 100 && !(await listening(port)); i++) await new Promise((r) => setTimeout(r, 50));
  if (!(await listening(port))) throw new Error(`nginx did not start: ${fs.readFileSync(path.join(dir, "error.log"), "utf8")}`);

  const session = http2.connect(`https://127.0.0.1:${port}`, { ca: fs.readFileSync(files.cert) });
  await new Promise<void>((resolve, reject) => session.once("connect", () => resolve()).once("error", reject));
  expect(session.alpnProtocol).toBe("h2");
  const streams = Array.from({ length: 10 }, () => {
    const s = { status: 0, headers: {} as http2.IncomingHttpHeaders, text: "" };
    const req = session.request({ ":path": `/sse-server/events?token=${subscribeToken(SECRET, ["t"])}` });
    req.setEncoding("utf8");
    req.on("response", (h) => {
      s.headers = h;
      s.status = Number(h[":status"]);
    });
    req.on("data", (c: string) => (s.text += c));
    req.on("error", () => undefined);
    return s;
  });
  await eventually(() => streams.every((s) => s.text === ":\n\n"), 10_000, "first heartbeat through nginx on every stream");
  for (const s of streams) {
    expect(s.status).toBe(200);
    expect(s.headers["content-type"]).toBe("text/event-stream");
    expect(s.headers["content-encoding"]).toBeUndefined();
    expect(s.headers["connection"]).toBeUndefined();
  }
  for (let n = 1; n <= 3; n++) {
    const status = await new Promise<number>((resolve, reject) => {
      const req = session.request({ ":method": "POST", ":path": "/sse-server/submit" });
      req.on("response", (h) => resolve(Number(h[":status"])));
      req.on("error", reject);
      req.resume();
      req.end(submitToken(SECRET, [{ topic: "t", event: "e", data: String(n) }]));
    });
    expect(status).toBe(200);
  }
  await eventually(() => streams.every((s) => s.text.includes("data:3\n")), 10_000, "every event through nginx");
  for (const s of streams) {
    expect(s.text.replace(/^id:[0-9a-z]+-([0-9]+)$/gm, "id:#$1")).toBe(
      ":\n\nevent:e\ndata:1\nid:#1\n\nevent:e\ndata:2\nid:#2\n\nevent:e\ndata:3\nid:#3\n\n",
    );
  }
  session.destroy();
  nginx.kill("SIGTERM");
  await nginxExit;
  server.child.kill("SIGTERM");
  expect(await server.exited).toBe(0);
}, 60_000);
