/**
 * Runs once, before any test file: builds dist/ (the CLI, the package entry
 * points) when it is missing or older than src/, so no test ever rebuilds it
 * while others are running (tsup empties dist/ first). `.ci/run` builds
 * before jest, so there this is a no-op.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

const ROOT = path.join(__dirname, "..");

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    const mtime = entry.isDirectory() ? newestMtime(file) : fs.statSync(file).mtimeMs;
    if (mtime > newest) newest = mtime;
  }
  return newest;
}

function builtAt(): number {
  let oldest = Infinity;
  for (const file of ["index.js", "index.mjs", "redis.js", "cli.js"]) {
    const p = path.join(ROOT, "dist", file);
    if (!fs.existsSync(p)) return 0;
    oldest = Math.min(oldest, fs.statSync(p).mtimeMs);
  }
  return oldest;
}

export default function globalSetup(): void {
  if (builtAt() >= newestMtime(path.join(ROOT, "src"))) return;
  const build = spawnSync("npx", ["tsup"], { cwd: ROOT, encoding: "utf8" });
  if (build.status !== 0) throw new Error(`npm run build failed before the tests:\n${build.stdout}\n${build.stderr}`);
}
