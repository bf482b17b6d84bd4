import { defineConfig } from "tsup";

// The library: CJS for `require` users (most Express apps) and ESM for
// `import`, each with its own bundled .d.ts. The CLI is a CJS executable only.
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
    entry: { cli: "src/cli.ts" },
    format: ["cjs"],
    target: "node20",
    platform: "node",
    sourcemap: true,
    splitting: false,
  },
]);
