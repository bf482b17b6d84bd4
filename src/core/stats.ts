import type { AdmissionStats } from "./admission";
import type { HubStats } from "./hub";
import type { WebhookStats } from "./webhook";

/** The hub's counters plus admission control and, with `webhookUrl`, the webhook's. */
export interface SseHubStats extends HubStats, AdmissionStats {
  readonly webhook?: WebhookStats;
}
