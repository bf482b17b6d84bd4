/**
 * sse-hub: a Server-Sent Events hub for Express, wire-compatible with the
 * Rust `sse-server` (Branca + MessagePack tokens, topics, `/events`,
 * `/submit`, `/ping`).
 */
export { createSseRouter, STREAM_HEADERS, type SseRouter, type RouterStats } from "./router";
export { DEFAULTS, type SseRouterOptions } from "./options";
export { SseError, HTTP_STATUS, isSseError, type SseErrorCode } from "./errors";
export { subscribeToken, submitToken, presenceToken, MAX_IDEMPOTENCY_KEY_LENGTH, type SubscribeTokenExtras, type EventInput, type PublishEventInput, type JsonValue } from "./tokens";
export { createConsoleLogger, DEFAULT_LOGGER, SILENT_LOGGER, LOG_LEVELS, type Logger, type LogLevel, type LogFields, type ConsoleLoggerOptions } from "./logger";
export { createPublisher, type Publisher, type PublisherOptions } from "./publisher";
export {
  MemoryBroker,
  MAX_IDEMPOTENCY_KEYS,
  hasBrokerHealth,
  type Broker,
  type BrokerHealth,
  type BrokerSink,
  type BrokerState,
  type FramedEvent,
  type MemoryBrokerOptions,
  type PublishOptions,
  type ReplayOptions,
  type ReplayResult,
  type ResetReason,
} from "./broker";
export { frameEvent, HEARTBEAT } from "./frame";
export type { HubStats, DisconnectReason } from "./hub";
export type { SubscribeInfo, SubscribeHook, UnsubscribeHook, UnsubscribeReason } from "./sessions";
export type { AdmissionStats, ShedReason } from "./admission";
export type { WebhookNotice, WebhookStats } from "./webhook";
export { isPresenceBroker, type PresenceBroker } from "./presence";
