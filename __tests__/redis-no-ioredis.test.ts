/**
 * ioredis is an optional peer dependency: loading `sse-hub/redis` without it
 * says to install it, in both builds, instead of Node's bare "Cannot find
 * module 'ioredis'". The built package is copied into a directory whose
 * node_modules has its dependencies but not ioredis, as a user's app might.
 */
import { execFileSync } from "node:child_process";
import { rmSync, symlinkSync } from "node:fs";
import path from "node:path";
import { installWithoutIoredis } from "./helpers/package-copy";

const ROOT = path.join(__dirname, "..");
const MESSAGE = "sse-hub/redis needs the ioredis package, which is not installed: run `npm install ioredis` next to sse-hub";

let dir: string;

beforeAll(() => {
  dir = installWithoutIoredis("sse-redis-no-ioredis-").dir;
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function node(args: string[]): string {
  return execFileSync(process.execPath, args, { cwd: dir, encoding: "utf8", timeout: 20_000 }).trim();
}

test("require('sse-hub/redis') without ioredis: an error that says `npm install ioredis`; the main entry still loads", () => {
  const out = node([
    "-e",
    `let err; try { require("sse-hub/redis"); } catch (e) { err = e; }
     console.log(JSON.stringify([err.message, err.code, typeof require("sse-hub").createSseRouter]));`,
  ]);
  expect(JSON.parse(out)).toEqual([MESSAGE, "MODULE_NOT_FOUND", "function"]);
});

test("import 'sse-hub/redis' without ioredis: the same error", () => {
  const out = node([
    "--input-type=module",
    "-e",
    `let err; try { await import("sse-hub/redis"); } catch (e) { err = e; }
     const main = await import("sse-hub");
     console.log(JSON.stringify([err.message, err.code, typeof main.createSseRouter]));`,
  ]);
  expect(JSON.parse(out)).toEqual([MESSAGE, "MODULE_NOT_FOUND", "function"]);
});

test("with ioredis next to it, both builds load (the ESM build resolves it from its own place)", () => {
  symlinkSync(path.join(ROOT, "node_modules", "ioredis"), path.join(dir, "node_modules", "ioredis"));
  try {
    expect(node(["-e", `console.log(typeof require("sse-hub/redis").createRedisBroker)`])).toBe("function");
    expect(node(["--input-type=module", "-e", `const m = await import("sse-hub/redis"); console.log(typeof m.createRedisBroker)`])).toBe("function");
  } finally {
    rmSync(path.join(dir, "node_modules", "ioredis"));
  }
});
