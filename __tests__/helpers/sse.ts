/**
 * Test helpers: a real Express app listening on port 0 with a router mounted,
 * and a raw SSE reader that records the exact bytes from the socket.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import express from "express";
import { createSseRouter, type SseRouter } from "../../src/adapters/express";
import type { SseRouterOptions } from "../../src/options";
import { parseSse } from "./parse";

export const SECRET = "7ad2a0b0cf5e1f6dbb0dc6a4f9a1e4c5b3f0e2d1c9b8a7f6e5d4c3b2a1908172";

export interface TestServer {
  app: express.Express;
  server: http.Server;
  router: SseRouter;
  port: number;
  /** Base URL of the mount point, without trailing slash. */
  base: string;
  close(): Promise<void>;
}

export async function startServer(
  options: Partial<SseRouterOptions> = {},
  mount = "/",
  setup?: (app: express.Express) => void,
): Promise<TestServer> {
  const router = createSseRouter({ secret: SECRET, ...options });
  const app = express();
  setup?.(app);
  app.use(mount, router);
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const base = `http://127.0.0.1:${port}${mount === "/" ? "" : mount.replace(/\/$/, "")}`;
  return {
    app,
    server,
    router,
    port,
    base,
    async close() {
      await router.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Serves an existing router from an Express app on a free port (for routers
 * built around a broker of the test's own). `close` closes the router, its
 * connections and the server.
 */
export async function serveRouter(router: SseRouter): Promise<{ base: string; close(): Promise<void> }> {
  const app = express();
  app.use("/", router);
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      await router.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A raw event-stream connection: exact bytes, headers and status. */
export class RawStream {
  status = 0;
  headers: http.IncomingHttpHeaders = {};
  rawHeaders: string[] = [];
  text = "";
  ended = false;
  private req: http.ClientRequest;
  private res: http.IncomingMessage | undefined;
  private waiters: Array<() => void> = [];
  readonly opened: Promise<void>;

  constructor(url: string, headers: Record<string, string> = {}) {
    this.req = http.get(url, { headers, agent: false });
    this.opened = new Promise((resolve, reject) => {
      this.req.on("error", (err) => {
        this.ended = true;
        this.notify();
        reject(err);
      });
      this.req.on("response", (res) => {
        this.res = res;
        this.status = res.statusCode ?? 0;
        this.headers = res.headers;
        this.rawHeaders = res.rawHeaders;
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          this.text += chunk;
          this.notify();
        });
        const end = () => {
          this.ended = true;
          this.notify();
        };
        res.on("end", end);
        res.on("close", end);
        res.on("error", end);
        resolve();
      });
    });
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Resolves when `predicate(text)` holds; rejects after `ms`. */
  async until(predicate: (text: string) => boolean, ms = 5000): Promise<string> {
    const deadline = Date.now() + ms;
    while (!predicate(this.text)) {
      if (this.ended) throw new Error(`stream ended before condition; got ${JSON.stringify(this.text.slice(-500))}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; got ${JSON.stringify(this.text.slice(-500))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.text;
  }

  /** Waits until the stream has ended (server closed it). */
  async closed(ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.ended) {
      if (Date.now() > deadline) throw new Error("stream did not end");
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Stops reading from the socket (a stalled client) without closing it. */
  pause(): void {
    this.res?.pause();
    this.res?.socket.pause();
  }

  close(): void {
    this.req.destroy();
  }
}

/** Parsed SSE events (name, data, id) from raw text, comments and retry ignored; see ./parse.ts. */
export function parseEvents(text: string): Array<{ event: string; data: string; id?: string }> {
  return parseSse(text).map(({ event, data, id }) => (id === undefined ? { event, data } : { event, data, id }));
}

/** Waits until `fn()` is true, polling. */
export async function eventually(fn: () => boolean, ms = 5000, what = "condition"): Promise<void> {
  const deadline = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
