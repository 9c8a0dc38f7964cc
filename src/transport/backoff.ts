export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
  multiplier: number;
  /** Fraction of the delay randomised either way, so reconnect storms spread out. */
  jitter: number;
}

export const defaultBackoff: BackoffPolicy = { initialMs: 500, maxMs: 30_000, multiplier: 2, jitter: 0.2 };

/** Exponential backoff with jitter; `reset()` after a healthy exchange. */
export class Backoff {
  private attempt = 0;

  constructor(private readonly policy: BackoffPolicy, private readonly random: () => number = Math.random) {}

  nextDelayMs(): number {
    const base = Math.min(this.policy.maxMs, this.policy.initialMs * this.policy.multiplier ** this.attempt);
    this.attempt++;
    const spread = base * this.policy.jitter;
    return Math.max(0, Math.round(base - spread + this.random() * 2 * spread));
  }

  /** The jitter of the first attempt, as a span: how widely retries that start together spread. */
  get spreadMs(): number {
    return 2 * this.policy.initialMs * this.policy.jitter;
  }

  reset(): void {
    this.attempt = 0;
  }
}
