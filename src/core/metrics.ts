/** The `/metrics` body: Prometheus text format from the hub's stats. */
import type { BrokerState } from "../brokers/broker";
import type { HubStats } from "./hub";
import type { SseHubStats } from "./stats";

/** Prometheus metrics: name, type, help, and how to read the value from stats. */
const METRICS: ReadonlyArray<readonly [string, "gauge" | "counter", string, (s: HubStats) => number]> = [
  ["sse_subscribers", "gauge", "Connected subscribers.", (s) => s.subscribers],
  ["sse_topics", "gauge", "Topics with at least one subscriber.", (s) => s.topics],
  ["sse_events_published_total", "counter", "Events received from the broker.", (s) => s.eventsPublished],
  ["sse_events_delivered_total", "counter", "Event frames written to subscribers.", (s) => s.eventsDelivered],
  ["sse_replays_total", "counter", "Resumes served from history.", (s) => s.replays],
  ["sse_resets_total", "counter", "Resumes answered with sse:reset.", (s) => s.resets],
  ["sse_broker_resets_total", "counter", "Stretches of the log the broker could not deliver (every subscriber got sse:reset).", (s) => s.brokerResets],
];

const BROKER_STATES: readonly BrokerState[] = ["ready", "catching_up", "unavailable"];

export function prometheus(stats: SseHubStats, brokerState: BrokerState | undefined): string {
  const lines: string[] = [];
  for (const [name, type, help, read] of METRICS) {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${read(stats)}`);
  }
  if (brokerState !== undefined) {
    // One series per state, 1 for the current one: alerts can match on the label.
    lines.push("# HELP sse_broker_state Broker state (1 for the current one).", "# TYPE sse_broker_state gauge");
    for (const state of BROKER_STATES) lines.push(`sse_broker_state{state="${state}"} ${state === brokerState ? 1 : 0}`);
  }
  lines.push("# HELP sse_disconnects_total Subscriber disconnects by reason.", "# TYPE sse_disconnects_total counter");
  for (const [reason, n] of Object.entries(stats.disconnects)) lines.push(`sse_disconnects_total{reason="${reason}"} ${n}`);
  lines.push("# HELP sse_shed_total Connections refused by admission control, by limit.", "# TYPE sse_shed_total counter");
  for (const [reason, n] of Object.entries(stats.shed)) lines.push(`sse_shed_total{reason="${reason}"} ${n}`);
  lines.push("# HELP sse_subscribe_refused_total Subscriptions refused by the onSubscribe hook.", "# TYPE sse_subscribe_refused_total counter", `sse_subscribe_refused_total ${stats.refused}`);
  const webhook = stats.webhook;
  if (webhook !== undefined) {
    lines.push("# HELP sse_webhook_notices_total Webhook notices by outcome.", "# TYPE sse_webhook_notices_total counter");
    lines.push(`sse_webhook_notices_total{result="sent"} ${webhook.sent}`, `sse_webhook_notices_total{result="dropped"} ${webhook.dropped}`);
    lines.push("# HELP sse_webhook_queue Webhook notices waiting.", "# TYPE sse_webhook_queue gauge", `sse_webhook_queue ${webhook.queued}`);
    lines.push("# HELP sse_webhook_failures_total Failed webhook requests (retried).", "# TYPE sse_webhook_failures_total counter", `sse_webhook_failures_total ${webhook.failures}`);
  }
  return lines.join("\n") + "\n";
}
