/**
 * Where the Express router lived before the core (src/core/) existed; kept
 * as a re-export so existing imports keep working.
 */
export { createSseRouter, type SseRouter, type SseRouterMethods, type RouterStats } from "./adapters/express";
export { STREAM_HEADERS, refusePipelined } from "./core/http";
