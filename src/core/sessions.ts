/**
 * What happens around a stream's life besides delivery: the app's
 * `onSubscribe` / `onUnsubscribe` hooks, webhook notices, admission slots and
 * presence. The router admits a request and runs the subscribe hook; the hub
 * then tells {@link Sessions} (its observer) when the stream joined and after
 * it ended, whatever ended it.
 */
import type { Admission } from "./admission";
import { SseError, isSseError } from "../errors";
import type { DisconnectReason, HubObserver, Sink } from "./hub";
import type { Logger } from "../logger";
import type { Presence } from "./presence";
import type { Webhook } from "./webhook";

/** What the hooks are told about a subscription. */
export interface SubscribeInfo {
  /** Distinct topics of the subscription. */
  readonly topics: readonly string[];
  /** The token's `sub` (subject, e.g. a user id), if it has one. */
  readonly sub: string | undefined;
  /** The token's whole decoded msgpack payload (map or positional array), unknown keys included. */
  readonly token: unknown;
  /** The client's address as the socket sees it (behind a proxy: the proxy's). */
  readonly remoteAddress: string | undefined;
  /** The `Last-Event-ID` the client resumes from, if any. */
  readonly lastEventId: string | undefined;
}

/** Why a stream ended: see {@link DisconnectReason}. */
export type UnsubscribeReason = DisconnectReason;

/**
 * Decides whether a subscription may start. Return (or resolve) nothing to
 * allow it; throw or return an `SseError` to refuse it with that error's
 * status (e.g. `new SseError("subscription_refused", "…")` → 403), or return
 * `false` for a plain 403. Async hooks get `hookTimeout` ms.
 */
export type SubscribeHook = (info: SubscribeInfo) => void | boolean | SseError | Promise<void | boolean | SseError>;

/** Told after a stream ended (errors are logged, never thrown at the hub). */
export type UnsubscribeHook = (info: SubscribeInfo, reason: UnsubscribeReason) => void | Promise<void>;

/** The subscribe hook did not answer within `timeout`: the caller sheds the connection. */
export const HOOK_TIMEOUT = Symbol("hook timeout");

/**
 * Runs the subscribe hook: resolves when it allows, `HOOK_TIMEOUT` when an
 * async hook is too slow, throws the `SseError` it refused with.
 */
export async function runSubscribeHook(hook: SubscribeHook, info: SubscribeInfo, timeout: number): Promise<typeof HOOK_TIMEOUT | undefined> {
  let verdict = hook(info);
  if (verdict instanceof Promise) {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<typeof HOOK_TIMEOUT>((resolve) => (timer = setTimeout(resolve, timeout, HOOK_TIMEOUT)));
    try {
      const settled = await Promise.race([verdict, late]);
      if (settled === HOOK_TIMEOUT) {
        verdict.catch(() => undefined); // its late answer is moot
        return HOOK_TIMEOUT;
      }
      verdict = settled;
    } finally {
      clearTimeout(timer);
    }
  }
  if (isSseError(verdict)) throw verdict;
  if (verdict === false) throw new SseError("subscription_refused", "the subscription was refused");
  return undefined;
}

interface Session {
  readonly info: SubscribeInfo;
  readonly presence: boolean;
}

export interface SessionsOptions {
  readonly admission: Admission;
  readonly presence: Presence;
  readonly webhook: Webhook | undefined;
  readonly onUnsubscribe: UnsubscribeHook | undefined;
  /** Per-subject slots are counted (`maxConnectionsPerSubject` > 0). */
  readonly bySubject: boolean;
  readonly logger: Logger;
}

export class Sessions implements HubObserver {
  private readonly bySink = new WeakMap<Sink, Session>();

  constructor(private readonly options: SessionsOptions) {}

  /**
   * Called by the router right before `hub.subscribe` with the same sink.
   * Nothing is kept per stream unless something needs it later (a plain
   * stream costs no extra memory).
   */
  starting(sink: Sink, info: SubscribeInfo, presence: boolean): void {
    const { webhook, onUnsubscribe, bySubject } = this.options;
    if (presence || webhook !== undefined || onUnsubscribe !== undefined || (bySubject && info.sub !== undefined)) {
      this.bySink.set(sink, { info, presence });
    }
  }

  /** The stream joined the hub. */
  subscribed(sink: Sink, topics: readonly string[]): void {
    const { presence, webhook } = this.options;
    presence.changed();
    const session = this.bySink.get(sink);
    if (session === undefined) return;
    if (session.presence) presence.watch(sink, topics);
    webhook?.notify(notice("subscribe", session.info));
  }

  /** The stream ended, for whatever reason: give back its slot, tell the app. */
  unsubscribed(sink: Sink, _topics: readonly string[], reason: DisconnectReason): void {
    const { admission, presence, webhook, onUnsubscribe, logger } = this.options;
    presence.changed();
    const session = this.bySink.get(sink);
    // Every stream of the hub was admitted by the router; without a session it has no subject slot.
    admission.release(session?.info.sub);
    if (session === undefined) return;
    this.bySink.delete(sink);
    if (session.presence) presence.unwatch(sink);
    webhook?.notify({ ...notice("unsubscribe", session.info), reason });
    if (onUnsubscribe === undefined) return;
    const report = (err: unknown) => logger.error(`onUnsubscribe hook failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    try {
      const done = onUnsubscribe(session.info, reason);
      if (done instanceof Promise) done.catch(report);
    } catch (err) {
      report(err);
    }
  }
}

function notice(type: "subscribe" | "unsubscribe", info: SubscribeInfo) {
  return {
    type,
    time: Date.now(),
    topics: info.topics,
    ...(info.sub !== undefined ? { sub: info.sub } : {}),
    ...(info.remoteAddress !== undefined ? { remoteAddress: info.remoteAddress } : {}),
    ...(info.lastEventId !== undefined ? { lastEventId: info.lastEventId } : {}),
  };
}
