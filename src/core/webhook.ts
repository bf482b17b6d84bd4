/**
 * Subscribe/unsubscribe notices POSTed to the app (`webhookUrl`,
 * `SSE_WEBHOOK_URL`), in batches, signed like `/submit`: the body is a
 * Branca token (same secret) of msgpack `{notices: [...]}`, so a backend
 * verifies it with the code it already has for minting tokens.
 *
 * Never in a stream's way: notices go into a bounded queue and one request at
 * a time carries up to {@link BATCH_SIZE} of them; a failed request (network
 * error, timeout, non-2xx) is retried with backoff (250 ms doubling, at most
 * 10 s) until the app takes it. When the queue is full, new notices are
 * dropped and counted (stats and `/metrics`), oldest ones keep their order.
 */
import { encode } from "@msgpack/msgpack";
import { brancaEncode } from "../tokens/branca";
import type { Logger } from "../logger";

/** One notice; keys are omitted when they have no value. */
export interface WebhookNotice {
  readonly type: "subscribe" | "unsubscribe";
  /** Unix ms when it happened. */
  readonly time: number;
  readonly topics: readonly string[];
  /** The token's `sub`. */
  readonly sub?: string;
  readonly remoteAddress?: string;
  readonly lastEventId?: string;
  /** Unsubscribe only: client, slow, shutdown, expired, broker. */
  readonly reason?: string;
}

export interface WebhookStats {
  /** Notices the app accepted (2xx). */
  readonly sent: number;
  /** Notices dropped because the queue was full (or left over at close). */
  readonly dropped: number;
  /** Notices waiting. */
  readonly queued: number;
  /** Failed requests (each retried). */
  readonly failures: number;
}

export interface WebhookOptions {
  readonly url: URL;
  readonly key: Uint8Array;
  readonly maxQueue: number;
  readonly logger: Logger;
  /** Per-request timeout in ms. */
  readonly timeout?: number;
}

/** Notices per request, at most. */
export const BATCH_SIZE = 500;
/** Notices of this long are collected into one request. */
const BATCH_WINDOW = 50;
/** At close, how long the last queued notices may take to go out. */
const CLOSE_GRACE = 2000;

const retryDelay = (attempt: number): number => Math.min(250 * 2 ** Math.min(attempt - 1, 6), 10_000);

export class Webhook {
  private queue: WebhookNotice[] = [];
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private attempt = 0;
  private closed = false;
  private readonly counters = { sent: 0, dropped: 0, failures: 0 };
  /** Where to, for logs: never the path or query (they may carry credentials). */
  private readonly where: string;

  constructor(private readonly options: WebhookOptions) {
    this.where = options.url.origin;
  }

  get stats(): WebhookStats {
    return { ...this.counters, queued: this.queue.length };
  }

  notify(notice: WebhookNotice): void {
    if (this.closed || this.queue.length >= this.options.maxQueue) {
      this.counters.dropped++;
      return;
    }
    this.queue.push(notice);
    if (this.timer === undefined && this.inFlight === undefined) this.wait(BATCH_WINDOW);
  }

  /** Tries once more to send what is queued (at most {@link CLOSE_GRACE} ms), then drops the rest. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const deadline = Date.now() + CLOSE_GRACE;
    // A request in flight to a hanging app must not hold the shutdown for its whole timeout.
    let grace: NodeJS.Timeout | undefined;
    await Promise.race([this.inFlight, new Promise<void>((resolve) => (grace = setTimeout(resolve, CLOSE_GRACE)))]);
    clearTimeout(grace);
    while (this.queue.length > 0 && this.attempt === 0 && Date.now() < deadline) await this.send(Math.max(1, deadline - Date.now()));
    this.counters.dropped += this.queue.length;
    this.queue = [];
  }

  private wait(ms: number): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.inFlight = this.send(this.options.timeout ?? 5000).finally(() => {
        this.inFlight = undefined;
        if (this.closed || this.queue.length === 0) return;
        this.wait(this.attempt === 0 ? 0 : retryDelay(this.attempt));
      });
    }, ms);
    this.timer.unref();
  }

  /** One request with the oldest notices; they leave the queue only once the app took them. */
  private async send(timeout: number): Promise<void> {
    const batch = this.queue.slice(0, BATCH_SIZE);
    if (batch.length === 0) return;
    const body = brancaEncode(this.options.key, encode({ notices: batch }, { ignoreUndefined: true }));
    let failure: string | undefined;
    try {
      const res = await fetch(this.options.url, {
        method: "POST",
        headers: { "content-type": "application/octet-stream" },
        body,
        signal: AbortSignal.timeout(timeout),
      });
      await res.arrayBuffer().catch(() => undefined);
      if (res.status < 200 || res.status > 299) failure = `answered ${res.status}`;
    } catch (err) {
      const cause = (err as { cause?: { code?: unknown } }).cause;
      failure = typeof cause?.code === "string" ? cause.code : (err as Error).name;
    }
    if (failure === undefined) {
      this.queue.splice(0, batch.length);
      this.counters.sent += batch.length;
      if (this.attempt > 0) this.options.logger.info(`webhook ${this.where} reachable again; ${this.queue.length} notices queued`);
      this.attempt = 0;
      return;
    }
    this.counters.failures++;
    // Once per outage, not once per retry.
    if (this.attempt === 0) this.options.logger.warn(`webhook ${this.where} failed (${failure}); retrying with backoff, streams are not affected`);
    this.attempt++;
  }
}
