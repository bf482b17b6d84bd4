/**
 * The standalone server (dist/cli.js) as a child process, with or without
 * TLS, and a self-signed certificate for localhost and 127.0.0.1 made with
 * openssl into a directory of the test's.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { SECRET } from "./sse";

export const CLI = path.join(__dirname, "..", "..", "dist", "cli.js");

export function requireCli(): void {
  if (!fs.existsSync(CLI)) throw new Error("dist/cli.js is missing: run npm run build first");
}

/** Writes cert.pem and key.pem (EC P-256, SAN localhost and 127.0.0.1) into `into`. */
export function makeCertificate(into: string): { cert: string; key: string } {
  const files = { cert: path.join(into, "cert.pem"), key: path.join(into, "key.pem") };
  const made = spawnSync(
    "openssl",
    ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=localhost",
      "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "2", "-keyout", files.key, "-out", files.cert],
    { encoding: "utf8" },
  );
  if (made.status !== 0) throw new Error(`openssl failed: ${made.stderr}`);
  return files;
}

export interface StartedCli {
  child: ChildProcess;
  /** From the startup line: `https://…` with TLS, else `http://…`. */
  url: string;
  exited: Promise<number | null>;
  output: () => string;
}

/** Starts dist/cli.js on a free port of 127.0.0.1; resolves at its startup line. */
export async function startCli(env: Record<string, string>): Promise<StartedCli> {
  const child = spawn(process.execPath, [CLI], {
    env: { PATH: process.env["PATH"] ?? "", SSE_SECRET: SECRET, PORT: "0", HOST: "127.0.0.1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no startup line: ${out}`)), 10_000);
    child.stdout!.on("data", () => {
      const m = /listening on (https?:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    void exited.then((code) => reject(new Error(`exited ${code}: ${out}`)));
  });
  return { child, url, exited, output: () => out };
}
