/**
 * `sse-hub/fastify`: the hub as a Fastify plugin. The only module that knows
 * Fastify, and it needs no Fastify code at run time (types only): it
 * registers the core's Node handlers as routes and ties the hub's lifecycle
 * to the app's.
 *
 * ```ts
 * await app.register(sseHubPlugin, { prefix: "/sse-server", secret });
 * await app.sseHub.publish([{ topic: "news", event: "headline", data: "…" }]);
 * ```
 */
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest, RawServerBase, RegisterOptions } from "fastify";
import { SseError, createSseHub, type Logger, type NodeHandler, type SseHub, type SseHubOptions } from "../core";

declare module "fastify" {
  interface FastifyInstance {
    /**
     * The hub registered by `sse-hub/fastify` on this instance (and the
     * instances below it): `publish`, `presence`, `stats`, `close`.
     */
    sseHub: SseHub;
  }
}

/**
 * Options of {@link sseHubPlugin}, besides Fastify's own `prefix` (the mount
 * point of the hub's routes, e.g. `"/sse-server"`; defaults to none, i.e.
 * `/events`, `/submit`, … at the root):
 * - the hub's options ({@link SseHubOptions}, as for `createSseRouter`): the
 *   plugin creates the hub. Its `logger` defaults to one writing to the
 *   app's logger (`fastify.log`) instead of the console.
 * - or `{ hub }`: an existing hub (from `createSseHub`), e.g. to share it with
 *   code that is not a Fastify plugin. It must not be given any hub options.
 *
 * Either way the plugin owns the hub's lifecycle: `onReady` awaits
 * `hub.start()` (so `app.ready()` / `app.listen()` reject when the broker
 * cannot start) and `app.close()` closes the hub (ends every stream, which
 * Fastify would otherwise wait for forever, then closes a broker the hub
 * created).
 */
export type SseHubPluginOptions = (SseHubOptions & { hub?: never }) | { hub: SseHub };

/**
 * Registers the hub's routes under `prefix`, decorates the instance with
 * `sseHub`, starts the hub on `onReady` and closes it on `preClose`.
 *
 * Each route answers every method itself (405 with `Allow`, `OPTIONS`, CORS
 * from the hub's `cors` option, the hub's JSON errors), from a route-level
 * `onRequest` hook that hijacks the reply: Fastify neither parses the body
 * (`POST /submit` bodies are read by the hub, with its own size and time
 * limits) nor sends a reply of its own. The app's own `onRequest` hooks run
 * first (e.g. authentication, rate limits); later hooks (`preParsing` …
 * `onSend`) and reply headers set by other plugins (such as
 * `@fastify/cors`) do not apply to the hub's routes.
 *
 * @throws SseError `invalid_option` for invalid hub options, or hub options
 *   given together with `hub`.
 */
export const sseHubPlugin: FastifyPluginAsync<SseHubPluginOptions, RawServerBase> = async (fastify, options) => {
  const hub = hubOf(fastify, options);
  fastify.decorate("sseHub", hub);
  fastify.addHook("onReady", () => hub.start());
  // preClose, not onClose: Fastify's onClose hooks run after the server has
  // closed, and the server waits for every open response, which event
  // streams never end by themselves.
  fastify.addHook("preClose", () => hub.close());
  // The routes in a child context of their own, which is where Fastify
  // applies the prefix; the plugin itself skips encapsulation (below) so
  // that the decoration and the hooks reach the app.
  await fastify.register(
    async (scope) => {
      for (const [path, handler] of hub.routes) {
        scope.all(path, { onRequest: answerWith(handler) }, neverCalled);
      }
    },
    // Fastify passes its own register options (`prefix`, …) along with the plugin's.
    { prefix: (options as RegisterOptions).prefix },
  );
};

// What `fastify-plugin` sets, without the dependency: no encapsulation, a
// name in Fastify's errors and plugin tree, and the Fastify versions supported.
Object.assign(sseHubPlugin, {
  [Symbol.for("skip-override")]: true,
  [Symbol.for("fastify.display-name")]: "sse-hub",
  [Symbol.for("plugin-meta")]: { name: "sse-hub", fastify: "5.x" },
});

export default sseHubPlugin;

/** The plugin's hub: the given one, or a new one from the options (Fastify's register options taken out). */
function hubOf(fastify: FastifyInstance<RawServerBase>, options: SseHubPluginOptions & RegisterOptions): SseHub {
  const { prefix: _prefix, logLevel: _logLevel, logSerializers: _logSerializers, ...own } = options;
  if (own.hub === undefined) return createSseHub({ ...own, logger: own.logger ?? fastifyLogger(fastify) });
  const extra = Object.keys(own).filter((key) => key !== "hub");
  if (extra.length > 0) {
    throw new SseError("invalid_option", `sse-hub/fastify: give either \`hub\` or hub options, not both (got ${extra.join(", ")})`);
  }
  return own.hub;
}

/**
 * The route-level `onRequest` hook serving one of the hub's routes: the raw
 * Node request and response go to the hub before Fastify reads anything of
 * the body. `hijack()` tells Fastify the response is not its own (it skips
 * the rest of its lifecycle and never writes to it); `done` is still called
 * so the hook chain ends, and Fastify stops there because the reply is
 * hijacked.
 */
function answerWith(handler: NodeHandler) {
  return (request: FastifyRequest<never, RawServerBase>, reply: FastifyReply<never, RawServerBase>, done: () => void): void => {
    reply.hijack();
    handler(request.raw, reply.raw);
    done();
  };
}

/** The route handler Fastify requires; never runs (the `onRequest` hook hijacked the reply). */
function neverCalled(): void {}

/** The hub's {@link Logger} onto Fastify's (pino-style: fields first, then the message). */
function fastifyLogger(fastify: FastifyInstance<RawServerBase>): Logger {
  const log = fastify.log;
  return {
    debug: (message, fields) => log.debug(fields ?? {}, message),
    info: (message, fields) => log.info(fields ?? {}, message),
    warn: (message, fields) => log.warn(fields ?? {}, message),
    error: (message, fields) => log.error(fields ?? {}, message),
  };
}
