/**
 * sse-hub: a Server-Sent Events hub for Express, wire-compatible with the
 * Rust `sse-server` (Branca + MessagePack tokens, topics, `/events`,
 * `/submit`, `/ping`). Everything of the framework-free core
 * (`sse-hub/core`), plus the Express router and the publisher client.
 */
export * from "./core/index";
export { createSseRouter, type SseRouter, type SseRouterMethods, type RouterStats } from "./adapters/express";
export type { SseRouterOptions } from "./options";
export { createPublisher, type Publisher, type PublisherOptions } from "./publisher";
