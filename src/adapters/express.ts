/**
 * The Express adapter: a Connect-style middleware `(req, res, next)` that
 * serves the core's routes and passes every other path on to `next`, with
 * the hub's methods on it. `app.use(path, router)` strips the mount path
 * from `req.url`, which is what the core's `handle` expects, so nothing of
 * Express is needed at run time (`express` is an optional peer dependency:
 * `sse-hub`'s main entry also serves token minting, the publisher and
 * node:http). Its type names nothing of Express either: an app without
 * `@types/express` (or on node:http, Connect) gets the same strict types,
 * and with them it is a handler `app.use` takes.
 */
import type { PublishOptions } from "../brokers/broker";
import type { SseError } from "../errors";
import type { SseRouterOptions } from "../options";
import type { PublishEventInput } from "../tokens";
import { createSseHub, type SseHub, type SseHubStats } from "../core/sse-hub";
import type { NodeRequest, NodeResponse } from "../core/http";

/** The hub's counters; the name the Express router has always used for them. */
export type RouterStats = SseHubStats;

/** What an {@link SseRouter} adds to the middleware: the hub's own methods. */
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

/**
 * `app.use("/sse-server", router)`: an Express (or Connect) middleware, also
 * callable from a plain `http.createServer` listener with a `next` for the
 * paths that are not the hub's.
 */
export interface SseRouter extends SseRouterMethods {
  (req: NodeRequest, res: NodeResponse, next: (err?: unknown) => void): void;
  /** A snapshot of counters; see {@link RouterStats}. */
  readonly stats: RouterStats;
}

/**
 * Creates the middleware serving `GET /events`, `POST /submit`,
 * `POST /presence` and `GET /ping` (and `/health`, `/metrics` when enabled)
 * relative to where it is mounted: a thin layer over {@link createSseHub}.
 * Other paths fall through to the host app.
 *
 * @throws SseError `invalid_option` when an option is invalid (e.g. the secret).
 */
export function createSseRouter(options: SseRouterOptions): SseRouter {
  const hub = createSseHub(options);
  // `handle` matches paths as Express's router did (case-insensitive, one
  // optional trailing slash); each route answers every method itself.
  const router = (req: NodeRequest, res: NodeResponse, next: (err?: unknown) => void): void => hub.handle(req, res, next);
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
