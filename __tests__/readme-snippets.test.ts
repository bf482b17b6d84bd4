/**
 * Docs that run: every README code block preceded by `<!-- snippet: test -->`
 * is executed against a real standalone server (dist/cli.js) — TypeScript
 * through esbuild and Node with the built package (imported by its name,
 * `sse-hub`), Python with Debian's python3 and examples/python on its path,
 * shell with bash and curl. Each must exit 0, and every event a snippet
 * publishes must reach a subscriber.
 *
 * The snippets say `http://127.0.0.1:8000` (the server's default); the test
 * points that at its own server on a free port, the only change it makes.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { transformSync } from "esbuild";
import { subscribeToken } from "../src/tokens";
import { RawStream, SECRET, parseEvents } from "./helpers/sse";

const ROOT = path.join(__dirname, "..");
const CLI = path.join(ROOT, "dist", "cli.js");
const MARKER = "<!-- snippet: test -->";

interface Snippet {
  lang: string;
  code: string;
  line: number;
}

function snippets(): Snippet[] {
  const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");
  const out: Snippet[] = [];
  const re = /<!-- snippet: test -->\n```(\w+)\n([\s\S]*?)\n```\n/g;
  for (let m = re.exec(readme); m !== null; m = re.exec(readme)) {
    out.push({ lang: m[1]!, code: m[2]!, line: readme.slice(0, m.index).split("\n").length });
  }
  // A marker not followed by a fenced block would silently test nothing.
  expect(out).toHaveLength(readme.split(MARKER).length - 1);
  return out;
}

let server: ChildProcess;
let base = "";
let dir = "";

beforeAll(async () => {
  if (!existsSync(CLI)) {
    const build = spawnSync("npx", ["tsup"], { cwd: ROOT, encoding: "utf8" });
    if (build.status !== 0) throw new Error(`build failed: ${build.stderr}`);
  }
  // Inside the package directory, so `import "sse-hub"` resolves to the build (package self-reference).
  mkdirSync(path.join(ROOT, "test-artifacts"), { recursive: true });
  dir = mkdtempSync(path.join(ROOT, "test-artifacts", "snippets-"));
  server = spawn(process.execPath, [CLI], {
    env: { PATH: process.env["PATH"] ?? "", SSE_SECRET: SECRET, PORT: "0", HOST: "127.0.0.1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  server.stderr!.on("data", (d) => (out += d));
  base = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no startup line: ${out}`)), 10_000);
    server.stdout!.on("data", (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
  });
}, 120_000);

afterAll(async () => {
  const exited = new Promise((resolve) => server.once("exit", resolve));
  server.kill("SIGTERM");
  await exited;
  rmSync(dir, { recursive: true, force: true });
});

function runSnippet(snippet: Snippet, index: number): { status: number | null; output: string } {
  const code = snippet.code.replaceAll("http://127.0.0.1:8000", base);
  const env = { PATH: process.env["PATH"] ?? "", SSE_SECRET: SECRET, PYTHONPATH: path.join(ROOT, "examples", "python") };
  let command: string;
  let args: string[];
  if (snippet.lang === "ts" || snippet.lang === "js") {
    const file = path.join(dir, `snippet-${index}.mjs`);
    writeFileSync(file, transformSync(code, { loader: "ts", format: "esm", target: "node20" }).code);
    [command, args] = [process.execPath, [file]];
  } else if (snippet.lang === "python") {
    // Debian's interpreter: the one python3-nacl and python3-msgpack are installed for.
    [command, args] = ["/usr/bin/python3", ["-c", code]];
  } else if (snippet.lang === "sh") {
    [command, args] = ["bash", ["--norc", "--noprofile", "-euo", "pipefail", "-c", code]];
  } else {
    throw new Error(`README.md:${snippet.line}: no runner for \`\`\`${snippet.lang}`);
  }
  const result = spawnSync(command, args, { cwd: ROOT, env, encoding: "utf8", timeout: 30_000, stdio: ["ignore", "pipe", "pipe"] });
  return { status: result.status, output: `${result.stdout}${result.stderr}${result.error ? String(result.error) : ""}` };
}

test("the README has runnable Node, Python and shell snippets, and each runs and delivers what it publishes", async () => {
  const all = snippets();
  expect(new Set(all.map((s) => s.lang))).toEqual(new Set(["ts", "python", "sh"]));
  const stream = new RawStream(`${base}/events?token=${subscribeToken(SECRET, ["weather", "news"])}`);
  await stream.until((t) => t.startsWith(":\n\n"));
  try {
    for (const [i, snippet] of all.entries()) {
      // What this snippet publishes to the server (the Express snippet publishes to its own in-process router).
      const expected = [...snippet.code.matchAll(/data: "([^"]+)"/g)].map((m) => m[1]!).filter(() => snippet.code.includes("127.0.0.1:8000"));
      const before = parseEvents(stream.text).length;
      const result = runSnippet(snippet, i);
      expect({ line: snippet.line, lang: snippet.lang, status: result.status, output: result.output }).toEqual({
        line: snippet.line,
        lang: snippet.lang,
        status: 0,
        output: expect.any(String),
      });
      if (expected.length > 0) {
        await stream.until(() => parseEvents(stream.text).length >= before + expected.length, 10_000);
        expect(parseEvents(stream.text).slice(before).map((e) => e.data)).toEqual(expected);
      }
      if (snippet.lang === "sh") expect(result.output).toBe("hub is up\npublished\n");
    }
  } finally {
    stream.close();
  }
}, 120_000);
