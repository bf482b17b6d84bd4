/**
 * The optional broker ability `BrokerInterest` (issue 15): the hub tells the
 * broker which topics got their first subscriber and which lost their last,
 * and holds a new subscriber's first heartbeat (and its live events) until
 * the broker delivers its topics. A MemoryBroker with the ability added, so
 * the hub's side is tested without Redis.
 */
import { MemoryBroker, type BrokerInterest } from "../src/brokers/broker";
import { createSseRouter } from "../src/adapters/express";
import { subscribeToken } from "../src/tokens";
import { SECRET, SseClient, waitFor } from "./helpers/redis";
import { serveRouter } from "./helpers/sse";

class InterestedBroker extends MemoryBroker implements BrokerInterest {
  calls: Array<{ added: string[]; removed: string[] }> = [];
  /** Resolves the pending `delivering` promise. */
  release: (() => void) | undefined;
  slow = false;

  interest(added: readonly string[], removed: readonly string[]): void {
    this.calls.push({ added: [...added], removed: [...removed] });
  }

  delivering(): Promise<void> | undefined {
    if (!this.slow) return undefined;
    return new Promise((resolve) => (this.release = resolve));
  }
}

test("first and last subscriber of each topic are told; a subscriber waits for its topics to be delivered, then gets the heartbeat and the events held meanwhile", async () => {
  const broker = new InterestedBroker();
  const router = createSseRouter({ secret: SECRET, broker, retry: 0 });
  const served = await serveRouter(router);
  const clients: SseClient[] = [];
  try {
    const open = (topics: string[]) => {
      const client = new SseClient(`${served.base}/events?token=${encodeURIComponent(subscribeToken(SECRET, topics))}`);
      clients.push(client);
      return client;
    };
    const first = open(["x", "y"]);
    await first.opened;
    expect(broker.calls).toEqual([{ added: ["x", "y"], removed: [] }]);
    // y already has a subscriber: only z is new.
    const second = open(["y", "z"]);
    await second.opened;
    expect(broker.calls[1]).toEqual({ added: ["z"], removed: [] });

    broker.slow = true;
    const waiting = open(["x"]);
    await waitFor(() => broker.release !== undefined, 5000, "the hub asking whether x is delivered");
    // Published while the subscriber waits: held, then delivered after its heartbeat.
    await router.publish([{ topic: "x", event: "n", data: "held" }]);
    broker.release!();
    await waiting.opened;
    await router.publish([{ topic: "x", event: "end", data: "" }]);
    expect((await waiting.untilMarker()).map((e) => e.data)).toEqual(["held"]);
    // x had a subscriber already: no call for the waiting one.
    expect(broker.calls).toHaveLength(2);

    first.close();
    waiting.close();
    await waitFor(() => broker.calls.length === 3, 5000, "x and its last subscriber gone");
    expect(broker.calls[2]).toEqual({ added: [], removed: ["x"] });
    second.close();
    await waitFor(() => broker.calls.length === 4, 5000, "y, z gone");
    expect(broker.calls[3]!.removed.sort()).toEqual(["y", "z"]);
    // Removals are told once per topic.
    expect(broker.calls.flatMap((c) => c.removed).sort()).toEqual(["x", "y", "z"]);
  } finally {
    for (const c of clients) c.close();
    await served.close();
    await router.close();
  }
});
