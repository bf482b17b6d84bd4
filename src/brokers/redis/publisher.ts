/**
 * Publishing: one script per batch appends the events to the stream and
 * pushes them to every instance, atomically. `publish()` resolves once Redis
 * answered; while Redis is unreachable it rejects at once with
 * `SseError("broker_unavailable")` (no offline queue; a connected but silent
 * Redis rejects after `publishTimeout`, the connection's command timeout),
 * which `/submit` answers with 503. With an idempotency key, the script
 * checks and sets `<key>:idem:<k>` in the same atomic step as the XADDs, so a
 * retry (after a 503 that may have been stored) appends nothing, whichever
 * instance it reaches. With partitions, one publisher per partition (see
 * ./index.ts for how a batch is split).
 */
import type { PublishOptions } from "../broker";
import { SseError } from "../../errors";
import type { EventInput } from "../../types";
import { unavailable, type Connection } from "./connection";
import { publishBatch } from "./scripts";

/** What the publisher needs of the partition it publishes to. */
export interface FollowedStream {
  /** False while publishing cannot reach this instance's own readers (with one partition: before the reader's first sync). */
  readonly followed: boolean;
  /** The newest Redis-clock ms known of this stream (the age bound's reference), 0 if unknown. */
  readonly clock: number;
  sync(conn: Connection): Promise<unknown>;
}

export interface PublisherOptions {
  readonly key: string;
  readonly channel: string;
  readonly sharded: boolean;
  readonly historyLength: number;
  readonly historyAge: number;
  readonly idempotencyWindow: number;
  readonly waitReplicas: number;
  readonly waitTimeout: number;
}

export class RedisPublisher {
  /** The sync script ran on the command connection since it (re)connected; publishing waits for it. */
  private synced: Promise<void> | undefined;

  constructor(
    private readonly cmd: Connection,
    private readonly stream: FollowedStream,
    private readonly options: PublisherOptions,
  ) {}

  /** The command connection closed (its owner tells): every reconnect may be to a Redis that restarted, so sync again before publishing on. */
  connectionLost(): void {
    this.synced = undefined;
  }

  async publish(events: readonly EventInput[], options?: PublishOptions): Promise<void> {
    if (events.length === 0) return;
    if (!this.stream.followed) {
      throw new SseError("broker_unavailable", "the event broker (Redis) is not connected yet; events were not accepted, retry shortly");
    }
    try {
      await this.ensureSynced();
    } catch (err) {
      throw unavailable(err);
    }
    const { key, channel, sharded, historyLength, historyAge, idempotencyWindow, waitReplicas, waitTimeout } = this.options;
    const clock = this.stream.clock;
    // The key lives in Redis, so a retry is recognised on any instance of the stream.
    const idempotencyKey = options?.idempotencyKey;
    try {
      await publishBatch(this.cmd, key, events, {
        maxLen: historyLength,
        // Age bound on Redis's own clock (the ids the reader saw), so instance clock skew cannot over-trim.
        minId: historyAge > 0 && clock > historyAge ? String(clock - historyAge) : "",
        channel,
        sharded,
        window: idempotencyWindow,
        idempotencyKey: idempotencyKey === undefined || idempotencyWindow === 0 ? undefined : key + ":idem:" + idempotencyKey,
        waitReplicas,
        waitTimeout,
      });
    } catch (err) {
      // Reported to the caller (503); the reader logs outages.
      throw unavailable(err);
    }
  }

  /** First publish on this connection: make sure a restored (older) stream gets a new epoch before anything is added to it. */
  private ensureSynced(): Promise<void> {
    if (this.synced === undefined) {
      const synced = this.stream.sync(this.cmd).then(() => undefined);
      this.synced = synced;
      synced.catch(() => {
        if (this.synced === synced) this.synced = undefined;
      });
    }
    return this.synced;
  }
}
