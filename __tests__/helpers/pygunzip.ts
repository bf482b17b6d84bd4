/**
 * An independent gzip decoder for tests: CPython's zlib (`decompressobj` with
 * 16 + MAX_WBITS, i.e. gzip framing) in a child process, fed chunk by chunk.
 * Several decoders live in one process, keyed by name, so property tests do
 * not pay a process start per stream. Each `feed` returns exactly what Python
 * could decode from the bytes so far: an event decodes on arrival or not at all.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createInterface, type Interface } from "node:readline";

const SCRIPT = String.raw`
import sys, zlib, json
decoders = {}
for line in sys.stdin:
    op, key, *rest = line.split()
    try:
        if op == "D":
            d = decoders.setdefault(key, zlib.decompressobj(16 + zlib.MAX_WBITS))
            out = d.decompress(bytes.fromhex(rest[0] if rest else ""))
            print(json.dumps({"out": out.hex()}), flush=True)
        elif op == "E":
            d = decoders.pop(key)
            tail = d.flush()
            print(json.dumps({"out": tail.hex(), "eof": d.eof, "unused": d.unused_data.hex()}), flush=True)
    except Exception as e:
        decoders.pop(key, None)
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
`;

export interface EndResult {
  out: Buffer;
  eof: boolean;
  unused: Buffer;
}

export class PyGunzip {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: Interface;
  private readonly waiting: Array<(line: string) => void> = [];

  constructor() {
    this.child = spawn("/usr/bin/python3", ["-c", SCRIPT]);
    this.lines = createInterface({ input: this.child.stdout });
    this.lines.on("line", (line) => this.waiting.shift()?.(line));
  }

  private ask(line: string): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      this.waiting.push((reply) => {
        const parsed = JSON.parse(reply) as Record<string, unknown>;
        if (typeof parsed.error === "string") reject(new Error(`python zlib: ${parsed.error}`));
        else resolve(parsed);
      });
      this.child.stdin.write(line + "\n");
    });
  }

  /** Feeds bytes to decoder `key`; resolves with what it decoded from them. */
  async feed(key: string, bytes: Buffer): Promise<Buffer> {
    const r = await this.ask(`D ${key} ${bytes.toString("hex")}`);
    return Buffer.from(r.out as string, "hex");
  }

  /** Ends decoder `key`: what flush() still gave, whether the member ended (trailer checked), bytes after it. */
  async end(key: string): Promise<EndResult> {
    const r = await this.ask(`E ${key}`);
    return { out: Buffer.from(r.out as string, "hex"), eof: r.eof === true, unused: Buffer.from(r.unused as string, "hex") };
  }

  close(): void {
    this.child.stdin.end();
  }
}
