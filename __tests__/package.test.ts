/**
 * The published entry points: CJS and ESM builds of the library and of the
 * optional Redis subpath resolve through the package's `exports` map by name
 * (as `require("sse-hub")` / `import "sse-hub"` in a user's app), and
 * the bundled types exist.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";

const root = path.join(__dirname, "..");

function node(args: string[]): string {
  // Run from the package root so the self-reference "sse-hub" resolves via `exports`.
  return execFileSync(process.execPath, args, { cwd: root, encoding: "utf8" }).trim();
}

test("require('sse-hub') gives the CommonJS build with the documented API", () => {
  const out = node([
    "-e",
    `const m = require("sse-hub"); const r = require("sse-hub/redis");
     console.log([typeof m.createSseRouter, typeof m.subscribeToken, typeof m.submitToken, typeof m.createPublisher, typeof m.SseError, typeof r.createRedisBroker].join(","))`,
  ]);
  expect(out).toBe("function,function,function,function,function,function");
});

test("import 'sse-hub' gives the ES module build, and tokens work from it", () => {
  const out = node([
    "--input-type=module",
    "-e",
    `import { createSseRouter, subscribeToken } from "sse-hub";
     import { createRedisBroker } from "sse-hub/redis";
     const token = subscribeToken("00".repeat(32), ["a"]);
     console.log(typeof createSseRouter, typeof createRedisBroker, /^[0-9A-Za-z]+$/.test(token));`,
  ]);
  expect(out).toBe("function function true");
});

test("import 'sse-hub/client' gives the browser ES module (no Node built-ins in it)", () => {
  const out = node([
    "--input-type=module",
    "-e",
    `import { createSseClient } from "sse-hub/client";
     import { readFileSync } from "node:fs";
     const code = readFileSync("dist/client.mjs", "utf8");
     console.log(typeof createSseClient, /from ["']node:|require[(]/.test(code));`,
  ]);
  expect(out).toBe("function false");
});

test("the browser client type-checks against the DOM lib (its own tsconfig)", () => {
  execFileSync("npx", ["tsc", "--noEmit", "-p", "src/client"], { cwd: root, encoding: "utf8" });
});

test("type declarations are bundled for both formats", () => {
  for (const file of ["index.d.ts", "index.d.mts", "core.d.ts", "core.d.mts", "redis.d.ts", "redis.d.mts", "fastify.d.ts", "fastify.d.mts", "client.d.mts"]) {
    expect(existsSync(path.join(root, "dist", file))).toBe(true);
  }
});

test("sse-hub/redis loads neither the main entry nor Express, and its errors are SseErrors of the main entry", () => {
  const out = node([
    "-e",
    `const { RedisBroker } = require("sse-hub/redis");
     const loaded = Object.keys(require.cache);
     const express = loaded.some((f) => f.includes("/node_modules/express/"));
     const main = loaded.some((f) => f.endsWith("/dist/index.js"));
     let err;
     try { new RedisBroker({ key: "" }); } catch (e) { err = e; }
     const m = require("sse-hub");
     console.log([express, main, m.isSseError(err), err instanceof m.SseError, err.code].join(","));`,
  ]);
  expect(out).toBe("false,false,true,true,invalid_option");
});

test("sse-hub/core (CJS and ESM) loads neither the main entry nor Express, and its errors are SseErrors of the main entry", () => {
  const cjs = node([
    "-e",
    `const { createSseHub } = require("sse-hub/core");
     const loaded = Object.keys(require.cache);
     const express = loaded.some((f) => f.includes("/node_modules/express/"));
     const main = loaded.some((f) => f.endsWith("/dist/index.js"));
     let err;
     try { createSseHub({ secret: "short" }); } catch (e) { err = e; }
     const m = require("sse-hub");
     console.log([typeof createSseHub, express, main, m.isSseError(err), err instanceof m.SseError, err.code].join(","));`,
  ]);
  expect(cjs).toBe("function,false,false,true,true,invalid_option");
  // ESM: nothing of Express is resolved by the time the core is imported.
  const esm = node([
    "--input-type=module",
    "-e",
    `import { createSseHub } from "sse-hub/core";
     import { createRequire } from "node:module";
     const require = createRequire(import.meta.url);
     const hub = createSseHub({ secret: "00".repeat(32) });
     console.log(typeof hub.handle, [...hub.routes.keys()].join(" "), Object.keys(require.cache).some((f) => f.includes("/node_modules/express/")));
     await hub.close();`,
  ]);
  expect(esm).toBe("function /events /submit /presence /ping false");
});

test("the main entry loads no Express (an optional peer dependency): its router is a plain (req, res, next) middleware", () => {
  const out = node([
    "-e",
    `const m = require("sse-hub");
     const router = m.createSseRouter({ secret: "00".repeat(32) });
     const express = Object.keys(require.cache).some((f) => f.includes("/node_modules/express/"));
     console.log([express, typeof router, router.length, typeof router.publish].join(","));
     router.close();`,
  ]);
  expect(out).toBe("false,function,3,function");
});

test("sse-hub/fastify loads neither Express, the main entry nor Fastify itself, and registers in a Fastify app (CJS and ESM)", () => {
  const cjs = node([
    "-e",
    `const entry = require("sse-hub/fastify");
     const loaded = Object.keys(require.cache);
     const express = loaded.some((f) => f.includes("/node_modules/express/"));
     const fastify = loaded.some((f) => f.includes("/node_modules/fastify/"));
     const main = loaded.some((f) => f.endsWith("/dist/index.js"));
     const app = require("fastify")();
     app.register(entry.sseHubPlugin, { prefix: "/sse", secret: "00".repeat(32) });
     app.ready().then(async () => {
       const routes = ["/sse/events", "/sse/submit"].map((url) => app.hasRoute({ method: "POST", url }));
       console.log([typeof entry.sseHubPlugin, entry.default === entry.sseHubPlugin, express, fastify, main, ...routes, typeof app.sseHub.publish].join(","));
       await app.close();
     });`,
  ]);
  expect(cjs).toBe("function,true,false,false,false,true,true,function");
  const esm = node([
    "--input-type=module",
    "-e",
    `import sseHubPlugin from "sse-hub/fastify";
     import Fastify from "fastify";
     const app = Fastify();
     await app.register(sseHubPlugin, { secret: "00".repeat(32) });
     console.log(app.hasRoute({ method: "GET", url: "/events" }), app.sseHub.closed);
     await app.close();
     console.log(app.sseHub.closed);`,
  ]);
  expect(esm).toBe("true false\ntrue");
});
