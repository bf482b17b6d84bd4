/**
 * `sse-hub/core`: the framework-free core. Serves from `http.createServer`,
 * `http2.createSecureServer` or any stack that hands over Node request and
 * response objects; loads no web framework.
 */
export { createSseHub, type SseHub, type SseHubStats } from "./sse-hub";
export { STREAM_HEADERS, type NodeHandler, type NodeRequest, type NodeResponse } from "./http";
export { DEFAULTS, type SseHubOptions } from "../options";
export { SseError, HTTP_STATUS, isSseError, type SseErrorCode } from "../errors";
export { subscribeToken, submitToken, presenceToken, MAX_IDEMPOTENCY_KEY_LENGTH, type SubscribeTokenExtras, type EventInput, type PublishEventInput, type JsonValue } from "../tokens";
export { createConsoleLogger, DEFAULT_LOGGER, SILENT_LOGGER, LOG_LEVELS, type Logger, type LogLevel, type LogFields, type ConsoleLoggerOptions } from "../logger";
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
} from "../brokers/broker";
export { frameEvent, HEARTBEAT } from "../framing/frame";
export type { HubStats, DisconnectReason } from "./hub";
export type { SubscribeInfo, SubscribeHook, UnsubscribeHook, UnsubscribeReason } from "./sessions";
export type { AdmissionStats, ShedReason } from "./admission";
export type { WebhookNotice, WebhookStats } from "./webhook";
export { isPresenceBroker, type PresenceBroker } from "./presence";
