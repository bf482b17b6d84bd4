/**
 * Headless Chromium (Debian's /usr/bin/chromium) driven by playwright-core,
 * with a fresh empty profile that is removed afterwards. playwright-core never
 * downloads a browser: if Chromium cannot run here, launching fails with a
 * clear message instead of skipping the test.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium, type BrowserContext } from "playwright-core";

export const CHROMIUM_PATH = process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium";

const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export interface Chromium {
  readonly context: BrowserContext;
  close(): Promise<void>;
}

export async function launchChromium(options: { viewport?: { width: number; height: number }; args?: readonly string[] } = {}): Promise<Chromium> {
  if (!fs.existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium is required for this test but ${CHROMIUM_PATH} does not exist. ` +
        "Install it: apt-get install -y chromium (CI's .ci/run does), or set CHROMIUM_PATH.",
    );
  }
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "sse-example-chromium-"));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: [...ARGS, ...(options.args ?? [])],
      viewport: options.viewport ?? { width: 1200, height: 900 },
      timeout: 30_000,
    });
  } catch (err) {
    fs.rmSync(userDataDir, { recursive: true, force: true });
    throw new Error(`Chromium (${CHROMIUM_PATH}) could not be started by playwright-core: ${(err as Error).message}`);
  }
  return {
    context,
    async close() {
      await context.close().catch(() => undefined);
      fs.rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}
