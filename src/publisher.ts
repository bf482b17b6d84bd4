/**
 * A small publisher for Node backends: mints submit tokens and POSTs them to
 * a running sse-server (standalone or mounted), over keep-alive connections
 * (Node's global `fetch` pools and reuses them).
 */
import { SseError, type SseErrorCode, HTTP_STATUS } from "./errors";
import { parseSecret } from "./validate";
import { submitToken, type EventInput } from "./tokens";

export interface PublisherOptions {
  /** Base URL where the router is mounted, e.g. `http://127.0.0.1:8000/sse-server`. `/submit` is appended. */
  url: string | URL;
  /** The server's secret: 64 hex characters or 32 bytes. */
  secret: string | Uint8Array;
  /** Per-request timeout in ms. Defaults to `10000`. */
  timeout?: number;
}

export interface Publisher {
  /** Submits events in one request; resolves when the server answered 200. */
  publish(events: readonly EventInput[]): Promise<void>;
}

export function createPublisher(options: PublisherOptions): Publisher {
  const key = parseSecret(options.secret);
  const base = new URL(options.url);
  if (!base.pathname.endsWith("/")) base.pathname += "/";
  const submitUrl = new URL("submit", base);
  const timeout = options.timeout ?? 10_000;
  return {
    async publish(events) {
      const res = await fetch(submitUrl, {
        method: "POST",
        headers: { "content-type": "application/octet-stream" },
        body: submitToken(key, events),
        signal: AbortSignal.timeout(timeout),
      }).catch((err: unknown) => {
        throw new SseError("broker_unavailable", `could not reach ${submitUrl.origin}: ${String(err)}`, { cause: err });
      });
      if (res.status === 200) {
        await res.arrayBuffer();
        return;
      }
      const body = (await res.json().catch(() => ({}))) as { error?: string; message?: string };
      const code = (body.error !== undefined && body.error in HTTP_STATUS ? body.error : "internal") as SseErrorCode;
      throw new SseError(code, `sse-server answered ${res.status}: ${body.message ?? res.statusText}`);
    },
  };
}
