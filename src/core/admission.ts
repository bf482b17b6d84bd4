/**
 * Admission control for new streams: an instance cap (`maxConnections`), a
 * per-subject cap (`maxConnectionsPerSubject`, subject = the token's `sub`)
 * and a connect-rate token bucket (`connectRate` per second, `connectBurst`).
 * Only new connections are judged; streams already open are never touched.
 *
 * A slot is taken when a request is admitted (before the `onSubscribe` hook
 * runs, so concurrent connects cannot overshoot while a hook is pending) and
 * given back when the stream ends or the request is refused later.
 */

/** Which limit refused a connection. */
/**
 * Which limit refused a connection. `tokens`: a long subscribe token arrived
 * while failed verifications of long tokens were over their CPU budget (a
 * forged-token flood; see InvalidTokenBudget in tokens.ts).
 */
export type ShedReason = "connections" | "subject" | "rate" | "hook_timeout" | "tokens";

export interface AdmissionLimits {
  /** 0: no limit. */
  readonly maxConnections: number;
  /** 0: no limit. */
  readonly maxConnectionsPerSubject: number;
  /** Connects per second; 0: no limit. */
  readonly connectRate: number;
  readonly connectBurst: number;
}

export interface AdmissionStats {
  /** Connections refused (shed) by reason; see {@link ShedReason}. */
  readonly shed: Readonly<Record<ShedReason, number>>;
  /** Subscriptions refused by the `onSubscribe` hook. */
  readonly refused: number;
}

export class Admission {
  /** Streams admitted and not yet ended (including those waiting for the hook). */
  private open = 0;
  private readonly bySubject = new Map<string, number>();
  private tokens: number;
  private refilled = performance.now();
  private readonly counters = { shed: { connections: 0, subject: 0, rate: 0, hook_timeout: 0, tokens: 0 } as Record<ShedReason, number>, refused: 0 };

  constructor(private readonly limits: AdmissionLimits) {
    this.tokens = limits.connectBurst;
  }

  get stats(): AdmissionStats {
    return { shed: { ...this.counters.shed }, refused: this.counters.refused };
  }

  /**
   * The cheap checks, before the token is decrypted (so a connect storm costs
   * little): the rate bucket, then the instance cap. Takes a rate token.
   */
  gate(): ShedReason | undefined {
    const { connectRate, maxConnections } = this.limits;
    if (connectRate > 0) {
      const now = performance.now();
      this.tokens = Math.min(this.limits.connectBurst, this.tokens + ((now - this.refilled) / 1000) * connectRate);
      this.refilled = now;
      if (this.tokens < 1) return this.shed("rate");
      this.tokens -= 1;
    }
    if (maxConnections > 0 && this.open >= maxConnections) return this.shed("connections");
    return undefined;
  }

  /** After the token: the per-subject cap; on success the slot is taken until {@link release}. */
  admit(subject: string | undefined): ShedReason | undefined {
    const max = this.limits.maxConnectionsPerSubject;
    if (subject !== undefined && max > 0) {
      const n = this.bySubject.get(subject) ?? 0;
      if (n >= max) return this.shed("subject");
      this.bySubject.set(subject, n + 1);
    }
    this.open++;
    return undefined;
  }

  release(subject: string | undefined): void {
    this.open--;
    if (subject === undefined || this.limits.maxConnectionsPerSubject === 0) return;
    const n = (this.bySubject.get(subject) ?? 1) - 1;
    if (n <= 0) this.bySubject.delete(subject);
    else this.bySubject.set(subject, n);
  }

  /** Counts a refusal by the app's hook. */
  refused(): void {
    this.counters.refused++;
  }

  shed(reason: ShedReason): ShedReason {
    this.counters.shed[reason]++;
    return reason;
  }
}
