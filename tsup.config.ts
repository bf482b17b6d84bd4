import { defineConfig } from "tsup";

// Dual build: CJS for `require` users (most Express apps) and ESM for `import`,
// each with its own bundled .d.ts, plus the standalone CLI.
export default defineConfig({
  entry: { index: "src/index.ts", cli: "src/cli.ts" },
  format: ["cjs", "esm"],
  dts: { entry: { index: "src/index.ts" } },
  target: "node20",
  platform: "node",
  sourcemap: true,
  clean: true,
  splitting: false,
});
