/**
 * A small publisher for Node backends: mints submit tokens and POSTs them to
 * a running sse-server (standalone or mounted), over keep-alive connections
 * (Node's global `fetch` pools and reuses them).
 */
import { SseError, type SseErrorCode, HTTP_STATUS } from "./errors";
import { parseSecret } from "./validate";
import { submitToken, type EventInput } from "./tokens";

export interface PublisherOptions {
  /**
   * Base URL where the router is mounted: `http://127.0.0.1:8000` for the
   * standalone server (or with its `BASE_PATH`, e.g. `…:8000/sse-server`),
   * your app's mount path when mounted in Express. `/submit` is appended.
   */
  url: string | URL;
  /** The server's secret: 64 hex characters or 32 bytes. Required. */
  secret: string | Uint8Array;
  /** Per-request timeout in ms. Defaults to `10000`. */
  timeout?: number;
}

export interface Publisher {
  /** Submits events in one request; resolves when the server answered 200. */
  publish(events: readonly EventInput[]): Promise<void>;
}

/** Why fetch failed, in a few words: undici hides the system error code in `cause`. */
function networkReason(err: unknown, timeout: number): string {
  if (err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError")) return `no answer within ${timeout} ms`;
  const cause = (err as { cause?: { code?: unknown; message?: unknown } } | undefined)?.cause;
  if (typeof cause?.code === "string") return cause.code;
  return err instanceof Error ? err.message : String(err);
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
        // Not broker_unavailable (a 503 from a running hub, worth a retry): the hub itself is not there, or the URL is wrong.
        throw new SseError("hub_unreachable", `could not reach the SSE hub at ${submitUrl.href} (${networkReason(err, timeout)}); check the url and that the server runs`, { cause: err });
      });
      if (res.status === 200) {
        await res.arrayBuffer();
        return;
      }
      const body = (await res.json().catch(() => ({}))) as { error?: string; message?: string };
      const code = (body.error !== undefined && body.error in HTTP_STATUS ? body.error : "internal") as SseErrorCode;
      // A 404 from a hub almost always means the url misses (or adds) the mount path.
      const hint = res.status === 404 ? `; is ${base.href} where the router is mounted? (the standalone server serves / unless BASE_PATH is set)` : "";
      throw new SseError(code, `sse-server answered ${res.status}: ${body.message ?? res.statusText}${hint}`);
    },
  };
}
