/**
 * Rewrites the README's standalone-server settings table from the one table
 * in src/cli/config.ts (`npm run docs:cli`). __tests__/cli.test.ts fails
 * when the README and the code differ, so run this after adding a row.
 */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { README_MARKERS, renderMarkdown } from "../src/cli/config";

export function withRenderedSettings(readme: string): string {
  const start = readme.indexOf(README_MARKERS.start);
  const end = readme.indexOf(README_MARKERS.end);
  if (start === -1 || end < start) throw new Error(`README.md lacks the markers ${README_MARKERS.start} … ${README_MARKERS.end}`);
  return readme.slice(0, start + README_MARKERS.start.length) + "\n" + renderMarkdown() + readme.slice(end);
}

if (require.main === module) {
  const file = path.join(__dirname, "..", "README.md");
  const before = readFileSync(file, "utf8");
  const after = withRenderedSettings(before);
  writeFileSync(file, after);
  console.log(before === after ? "README.md settings table already up to date" : "README.md settings table rewritten");
}
