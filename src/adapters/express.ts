/**
 * The Express adapter: an Express Router whose routes are the core's
 * handlers, with the hub's methods on it. The only module that imports
 * Express.
 */
import express, { type Router } from "express";
import type { PublishOptions } from "../brokers/broker";
import type { SseError } from "../errors";
import type { SseRouterOptions } from "../options";
import type { PublishEventInput } from "../tokens";
import { createSseHub, type SseHub, type SseHubStats } from "../core/sse-hub";
import type { NodeRequest, NodeResponse } from "../core/http";

/** The hub's counters; the name the Express router has always used for them. */
export type RouterStats = SseHubStats;

/** What an {@link SseRouter} adds to an Express Router: the hub's own methods. */
export interface SseRouterMethods {
  /** The framework-free hub under this router (its routes, `handle`, `start`). */
  readonly hub: SseHub;
  /** See {@link SseHub.publish}. */
  publish(events: readonly PublishEventInput[], options?: PublishOptions): Promise<void>;
  /** Ends every stream cleanly, stops timers, closes the broker if this router created it. */
  close(): Promise<void>;
  /** See {@link SseHub.presence}. */
  presence(topics: readonly string[]): Promise<Record<string, number>>;
  /**
   * Answers `err` exactly as this router answers its own errors (its CORS
   * policy, the JSON body, status from the error code, logging).
   */
  respondError(req: NodeRequest, res: NodeResponse, err: SseError): void;
}

export interface SseRouter extends Router, SseRouterMethods {
  /** A snapshot of counters; see {@link RouterStats}. */
  readonly stats: RouterStats;
}

/**
 * Creates an Express Router serving `GET /events`, `POST /submit`,
 * `POST /presence` and `GET /ping` (and `/health`, `/metrics` when enabled)
 * relative to where it is mounted: a thin layer over {@link createSseHub}.
 * Other paths fall through to the host app.
 *
 * @throws SseError `invalid_option` when an option is invalid (e.g. the secret).
 */
export function createSseRouter(options: SseRouterOptions): SseRouter {
  const hub = createSseHub(options);
  const router = express.Router();
  // `all`: each handler answers every method itself (OPTIONS, 405 with Allow).
  for (const [path, handler] of hub.routes) router.all(path, handler);
  const methods: SseRouterMethods = {
    hub,
    publish: (events, publishOptions) => hub.publish(events, publishOptions),
    close: () => hub.close(),
    presence: (topics) => hub.presence(topics),
    respondError: (req, res, err) => hub.respondError(req, res, err),
  };
  // A getter cannot be copied by Object.assign (it would copy one snapshot).
  return withGetter(Object.assign(router, methods), "stats", () => hub.stats);
}

function withGetter<T extends object, K extends string, V>(target: T, key: K, get: () => V): T & { readonly [P in K]: V } {
  return Object.defineProperty(target, key, { get, enumerable: true }) as T & { readonly [P in K]: V };
}
