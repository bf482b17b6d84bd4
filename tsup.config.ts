import { defineConfig } from "tsup";

// The library: CJS for `require` users (most Express apps) and ESM for
// `import`, each with its own bundled .d.ts. `sse-hub/redis` is a separate
// entry so that apps without Redis never load ioredis (an optional peer
// dependency, kept external); it carries its own copy of the small shared
// modules and does not load the main entry or Express (errors are recognised
// by a global brand, not by class identity, so copies agree). The CLI is a
// CJS executable only.
export default defineConfig([
  {
    entry: { index: "src/index.ts" },
    format: ["cjs", "esm"],
    dts: true,
    target: "node20",
    platform: "node",
    sourcemap: true,
    clean: true,
    splitting: false,
  },
  {
    entry: { redis: "src/redis.ts" },
    format: ["cjs", "esm"],
    dts: true,
    target: "node20",
    platform: "node",
    sourcemap: true,
    splitting: false,
  },
  {
    entry: { cli: "src/cli.ts" },
    format: ["cjs"],
    target: "node20",
    platform: "node",
    sourcemap: true,
    splitting: false,
  },
]);
