import { rmSync } from "node:fs";
import { defineConfig, type Options } from "tsup";

// dist/ is emptied once, here, before any of the builds below start. tsup's
// per-build `clean` ran concurrently with the other builds and, under load,
// could delete files another build had just written (seen: dist/client.d.mts).
rmSync("dist", { recursive: true, force: true });

type EsbuildPlugin = NonNullable<Options["esbuildPlugins"]>[number];

/**
 * `sse-server/redis` must throw the same `SseError` class the router checks
 * with `instanceof` (else a Redis outage would be a 500, not a 503), so its
 * bundle imports errors from the main entry instead of carrying a copy.
 * Only attached to that entry's build.
 */
const sharedErrors: EsbuildPlugin = {
  name: "sse-server-shared-errors",
  setup(build) {
    const main = build.initialOptions.format === "esm" ? "./index.mjs" : "./index.js";
    // Every module this entry bundles (redis.ts, and options.ts it shares
    // with the router) gets the main entry's errors module.
    build.onResolve({ filter: /^\.\/errors$/ }, () => ({ path: main, external: true }));
  },
};

// The library: CJS for `require` users (most Express apps) and ESM for
// `import`, each with its own bundled .d.ts. `sse-server/redis` is a separate
// entry so that apps without Redis never load ioredis (an optional peer
// dependency, kept external). `sse-server/client` is the browser client: ESM
// only, platform browser, no dependencies bundled in but our own code. The CLI
// is a CJS executable only.
export default defineConfig([
  {
    entry: { index: "src/index.ts" },
    format: ["cjs", "esm"],
    dts: true,
    target: "node20",
    platform: "node",
    sourcemap: true,
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
    esbuildPlugins: [sharedErrors],
  },
  {
    entry: { client: "src/client/index.ts" },
    format: ["esm"],
    dts: { compilerOptions: { lib: ["ES2022", "DOM", "DOM.Iterable"], types: [] } },
    target: "es2020",
    platform: "browser",
    sourcemap: true,
    splitting: false,
    tsconfig: "src/client/tsconfig.json",
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
