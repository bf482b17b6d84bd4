/**
 * The built package (dist/ and package.json) installed into a fresh
 * directory's node_modules with its runtime dependencies but without the
 * optional ioredis, as a user's app that never installed it would have it.
 */
import { cpSync, mkdirSync, mkdtempSync, symlinkSync } from "node:fs";
import os from "node:os";
import path from "node:path";

const ROOT = path.join(__dirname, "..", "..");

/** Returns the directory (remove it with `rmSync(dir, { recursive: true })`) and the package's path in it. */
export function installWithoutIoredis(prefix: string): { dir: string; pkg: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  const pkg = path.join(dir, "node_modules", "sse-hub");
  mkdirSync(pkg, { recursive: true });
  cpSync(path.join(ROOT, "dist"), path.join(pkg, "dist"), { recursive: true });
  cpSync(path.join(ROOT, "package.json"), path.join(pkg, "package.json"));
  for (const dep of ["express", "@msgpack/msgpack"]) {
    mkdirSync(path.dirname(path.join(dir, "node_modules", dep)), { recursive: true });
    symlinkSync(path.join(ROOT, "node_modules", dep), path.join(dir, "node_modules", dep));
  }
  return { dir, pkg };
}
