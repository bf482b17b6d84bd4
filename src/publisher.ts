/**
 * A small publisher for Node backends: mints submit tokens and POSTs them to
 * a running sse-server (standalone or mounted), over keep-alive connections
 * (Node's global `fetch` pools and reuses them).
 */
import { SseError, type SseErrorCode, HTTP_STATUS } from "./errors";
import type { PublishOptions } from "./brokers/broker";
import { integerOption, parseSecret } from "./validate";
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
  /**
   * Further attempts after a `503` or a failed connection, for calls with an
   * `idempotencyKey` only (without a key a retry could publish twice). Defaults to `2`.
   */
  retries?: number;
  /** Delay before the first retry in ms, doubled for each further one. Defaults to `500`. */
  retryDelay?: number;
}

export interface Publisher {
  /**
   * Submits events in one request; resolves when the server answered 200.
   * With `idempotencyKey` (e.g. a UUID per batch), a `503` or a lost
   * connection is retried with the same key: the server may have stored the
   * batch already, and answers 200 to the retry without publishing it twice.
   */
  publish(events: readonly EventInput[], options?: PublishOptions): Promise<void>;
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
  const timeout = integerOption("timeout", options.timeout, 10_000, 1);
  const retries = integerOption("retries", options.retries, 2, 0, 100);
  const retryDelay = integerOption("retryDelay", options.retryDelay, 500, 0);

  /** One POST; `retry` says whether the same token may be sent again (503 or no answer). */
  async function attempt(body: string): Promise<{ error: SseError; retry: boolean } | undefined> {
    let res: Response;
    try {
      res = await fetch(submitUrl, {
        method: "POST",
        headers: { "content-type": "application/octet-stream" },
        body,
        signal: AbortSignal.timeout(timeout),
      });
    } catch (err) {
      // Not broker_unavailable (a 503 from a running hub): the hub itself is not there, or the URL is wrong.
      // Retried like a 503 all the same: a keyed batch may have arrived before the connection broke.
      const reason = networkReason(err, timeout);
      return {
        error: new SseError("hub_unreachable", `could not reach the SSE hub at ${submitUrl.href} (${reason}); check the url and that the server runs`, { cause: err }),
        retry: true,
      };
    }
    if (res.status === 200) {
      await res.arrayBuffer();
      return undefined;
    }
    const json = (await res.json().catch(() => ({}))) as { error?: string; message?: string };
    const code = (json.error !== undefined && json.error in HTTP_STATUS ? json.error : "internal") as SseErrorCode;
    // A 404 from a hub almost always means the url misses (or adds) the mount path.
    const hint = res.status === 404 ? `; is ${base.href} where the router is mounted? (the standalone server serves / unless BASE_PATH is set)` : "";
    return { error: new SseError(code, `sse-server answered ${res.status}: ${json.message ?? res.statusText}${hint}`), retry: res.status === 503 };
  }

  return {
    async publish(events, publishOptions) {
      const idempotencyKey = publishOptions?.idempotencyKey;
      // One token for every attempt: the same key, so the server can recognise the retry.
      const body = submitToken(key, events, { idempotencyKey });
      const attempts = idempotencyKey === undefined ? 1 : 1 + retries;
      for (let i = 0; ; i++) {
        const failed = await attempt(body);
        if (failed === undefined) return;
        if (!failed.retry || i + 1 >= attempts) throw failed.error;
        await new Promise((resolve) => setTimeout(resolve, retryDelay * 2 ** i));
      }
    },
  };
}
