/** @jest-config-loader esbuild-register */
import type { Config } from "jest";

const config: Config = {
  testEnvironment: "node",
  roots: ["<rootDir>/__tests__"],
  testMatch: ["**/*.test.ts"],
  // Builds dist/ once when it is stale, before any test file runs (never during).
  globalSetup: "<rootDir>/__tests__/global-setup.ts",
  transform: {
    "^.+\\.(t|j)sx?$": ["@swc/jest", { jsc: { target: "es2022", parser: { syntax: "typescript" } } }],
  },
  // Servers, child processes and sockets: give slow CI machines room.
  testTimeout: 30_000,
  // Test files start their own servers on port 0; two workers match CI's two cores.
  maxWorkers: 2,
};

export default config;
