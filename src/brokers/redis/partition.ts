/**
 * One partition of the broker's log: its stream, epoch and channel, its
 * publisher and replayer, and its reader while this instance reads it. With
 * `partitions` = 1 there is one, read from start to close (today's layout:
 * `<key>`, `<key>:epoch`, `<key>:idem:<k>`). With more, partition `n` of `P`
 * has the keys `<key>:{p<n>/<P>}`, `...:epoch` and `...:idem:<k>`: the hash
 * tag puts all of them (and the sharded channel) in one Redis Cluster slot,
 * and naming `P` makes a change of `partitions` start new streams (old ids
 * then get `sse:reset`) instead of mixing topics hashed two ways in one stream.
 */
import type { BrokerSink } from "../broker";
import type { Connection, OutageLog } from "./connection";
import { RedisPublisher } from "./publisher";
import { RedisReader } from "./reader";
import { RedisReplayer } from "./replayer";
import type { StreamKeys, SyncResult } from "./scripts";
import { syncEpoch } from "./scripts";

export interface PartitionSettings {
  readonly key: string;
  readonly partitions: number;
  /** Database number, in the channel name (channels are global to a Redis server). */
  readonly db: number;
  readonly sharded: boolean;
  readonly historyLength: number;
  readonly historyAge: number;
  readonly idempotencyWindow: number;
  readonly waitReplicas: number;
  readonly publishTimeout: number;
  readonly readCount: number;
  readonly checkInterval: number;
  readonly log: (message: string) => void;
  readonly outage: OutageLog;
}

/** The stream key of partition `index` (see the module comment). */
export function partitionKey(key: string, index: number, partitions: number): string {
  return partitions === 1 ? key : `${key}:{p${index}/${partitions}}`;
}

export class Partition {
  readonly keys: StreamKeys;
  readonly channel: string;
  readonly publisher: RedisPublisher;
  readonly replayer: RedisReplayer;
  /** The reader while this instance reads the partition. */
  reader: RedisReader | undefined;
  /** Topics of this partition with subscribers on this hub (partitions > 1). */
  topicsInUse = 0;
  /** Pending stop of the reader after its last topic went (so flapping topics do not resubscribe each time). */
  lingerTimer: NodeJS.Timeout | undefined;
  /** Counters of readers stopped before the current one. */
  private pastEventsRead = 0;
  private pastBytesRead = 0;
  /** The newest Redis-clock ms seen of this stream while no reader follows it (from publish syncs). */
  private seenMs = 0;
  /** The partition number in ids; undefined with one partition. */
  private readonly idPartition: number | undefined;

  constructor(
    readonly index: number,
    private readonly cmd: Connection,
    private readonly conn: Connection,
    private readonly settings: PartitionSettings,
  ) {
    const key = partitionKey(settings.key, index, settings.partitions);
    this.keys = { key, epochKey: key + ":epoch" };
    this.channel = `sse-server:${settings.db}:${key}`;
    this.idPartition = settings.partitions === 1 ? undefined : index;
    this.publisher = new RedisPublisher(cmd, this, {
      key,
      channel: this.channel,
      sharded: settings.sharded,
      historyLength: settings.historyLength,
      historyAge: settings.historyAge,
      idempotencyWindow: settings.idempotencyWindow,
      waitReplicas: settings.waitReplicas,
      // Half the command timeout: WAIT answers (with too few replicas) before the connection gives up on it.
      waitTimeout: Math.max(1, Math.floor(settings.publishTimeout / 2)),
    });
    this.replayer = new RedisReplayer(cmd, this.keys, settings.readCount, this.idPartition);
  }

  /** With one partition, publishing waits for the reader's first sync (else this instance's subscribers would miss it). */
  get followed(): boolean {
    return this.settings.partitions > 1 || this.reader?.epoch !== undefined;
  }

  get clock(): number {
    return Math.max(this.seenMs, this.reader?.cursor.ms ?? 0);
  }

  /** Syncs the epoch with what the reader knows (or, without one, only creates a missing epoch). */
  async sync(conn: Connection): Promise<SyncResult> {
    const result = this.reader !== undefined ? await this.reader.sync(conn) : await syncEpoch(conn, this.keys, undefined);
    this.seenMs = Math.max(this.seenMs, result.head.ms);
    return result;
  }

  /** Starts reading (subscribes, then catches up from the head). */
  startReader(sink: BrokerSink, startTimeout: number, owns: ((topic: string) => boolean) | undefined): Promise<void> {
    const s = this.settings;
    this.reader = new RedisReader(this.conn, this.cmd, {
      keys: this.keys,
      channel: this.channel,
      sharded: s.sharded,
      partition: this.idPartition,
      owns,
      readCount: s.readCount,
      checkInterval: s.checkInterval,
      log: s.log,
      outage: s.outage,
    });
    return this.reader.start(sink, startTimeout);
  }

  /** Stops reading (unsubscribes); its counters stay in {@link stats}. */
  stopReader(): Promise<void> {
    const reader = this.reader;
    if (reader === undefined) return Promise.resolve();
    this.reader = undefined;
    this.pastEventsRead += reader.eventsRead;
    this.pastBytesRead += reader.bytesRead;
    this.seenMs = Math.max(this.seenMs, reader.cursor.ms);
    return reader.close();
  }

  get stats(): PartitionStats {
    return {
      partition: this.index,
      reading: this.reader !== undefined,
      eventsRead: this.pastEventsRead + (this.reader?.eventsRead ?? 0),
      bytesRead: this.pastBytesRead + (this.reader?.bytesRead ?? 0),
    };
  }
}

/** What an instance read of one partition (see `RedisBroker.partitionStats`). */
export interface PartitionStats {
  readonly partition: number;
  /** Whether this instance reads the partition now. */
  readonly reading: boolean;
  /** Entries received from Redis since start (pushed or read from the stream, including ones for no subscriber here). */
  readonly eventsRead: number;
  /** Their bytes as received (pushed messages, or ids and fields read). */
  readonly bytesRead: number;
}
