import { rmSync } from "node:fs";
import { defineConfig, type Options } from "tsup";

// dist/ is emptied once, here, before any of the builds below start. tsup's
// per-build `clean` ran concurrently with the other builds and, under load,
// could delete files another build had just written (seen: dist/client.d.mts).
rmSync("dist", { recursive: true, force: true });

// The library: CJS for `require` users (most Express apps) and ESM for
// `import`, each with its own bundled .d.ts. `sse-hub/redis` is a separate
// entry so that apps without Redis never load ioredis (an optional peer
// dependency, kept external); it carries its own copy of the small shared
// modules and does not load the main entry or Express (errors are recognised
// by a global brand, not by class identity, so copies agree).
// `sse-hub/client` is the browser client: ESM only, platform browser, no
// dependencies bundled in but our own code. The CLI is a CJS executable only.
const nodeLibrary = {
  format: ["cjs", "esm"],
  dts: true,
  target: "node20",
  platform: "node",
  sourcemap: true,
  splitting: false,
} satisfies Options;

export default defineConfig([
  { ...nodeLibrary, entry: { index: "src/index.ts" } },
  // `sse-hub/core`: the framework-free core, for node:http, node:http2 and
  // other stacks; like `sse-hub/redis`, it must not load Express.
  { ...nodeLibrary, entry: { core: "src/core/index.ts" } },
  // `sse-hub/fastify`: the Fastify plugin, with its own copy of the core.
  // Fastify is an optional peer dependency and only a type import here
  // (external in the .d.ts too); Express is never loaded.
  { ...nodeLibrary, entry: { fastify: "src/adapters/fastify.ts" } },
  {
    ...nodeLibrary,
    entry: { redis: "src/brokers/redis/index.ts" },
    // ioredis is loaded with `require` in a try, so that a missing ioredis
    // says to install it (src/brokers/redis/connection.ts). ES modules have no
    // `require`: the ESM build gets one from createRequire, resolving from
    // dist/ as `import` would.
    banner: ({ format }) =>
      format === "esm" ? { js: 'import { createRequire as __sseHubCreateRequire } from "node:module";\nconst require = __sseHubCreateRequire(import.meta.url);' } : {},
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
