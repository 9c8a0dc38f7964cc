import { RelayError } from '../errors.js';

export interface AdmissionPolicy {
  /** New admissions per second (0 = no limit). */
  ratePerSecond: number;
  /** Admissions that may pass at once before the rate applies. */
  burst: number;
  /** Waiting admissions beyond this are refused at once. */
  maxQueued: number;
  /** A waiting admission is refused after this long. */
  maxWaitMs: number;
}

export type AdmissionPriority = 'reconnect' | 'new';

interface Waiter {
  resolve: () => void;
  reject: (error: RelayError) => void;
  timer: NodeJS.Timeout;
}

const overloaded = (what: string, why: string) => new RelayError('MR_OVERLOADED', `${what}: relay overloaded (${why}); retry with backoff`);

/**
 * A token bucket with a bounded queue, for new xDS streams and CSRs. Clients that reconnect with
 * the versions they hold are cheap (they need little or nothing sent) and go first. Overload is
 * answered with UNAVAILABLE, which istio-agent and Envoy retry with backoff; streams already
 * admitted are never affected.
 */
export class AdmissionControl {
  private tokens: number;
  private lastRefill = Date.now();
  private readonly queues: Record<AdmissionPriority, Waiter[]> = { reconnect: [], new: [] };
  private drainTimer: NodeJS.Timeout | undefined;
  admitted = 0;
  refused = 0;

  constructor(private readonly policy: AdmissionPolicy, private readonly what: string) {
    this.tokens = policy.burst;
  }

  get queued(): number {
    return this.queues.reconnect.length + this.queues.new.length;
  }

  admit(priority: AdmissionPriority): Promise<void> {
    if (this.policy.ratePerSecond <= 0) return Promise.resolve();
    this.refill();
    if (this.queued === 0 && this.tokens >= 1) {
      this.tokens -= 1;
      this.admitted++;
      return Promise.resolve();
    }
    if (this.queued >= this.policy.maxQueued) {
      this.refused++;
      return Promise.reject(overloaded(this.what, `${this.queued} waiting`));
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        resolve, reject,
        timer: setTimeout(() => {
          const queue = this.queues[priority];
          const index = queue.indexOf(waiter);
          if (index !== -1) queue.splice(index, 1);
          this.refused++;
          reject(overloaded(this.what, `waited ${this.policy.maxWaitMs} ms`));
        }, this.policy.maxWaitMs),
      };
      this.queues[priority].push(waiter);
      this.scheduleDrain();
    });
  }

  /** Takes a token if one is free now, never waiting (for work that cannot be queued, e.g. creating a group). */
  tryAdmit(): boolean {
    if (this.policy.ratePerSecond <= 0) return true;
    this.refill();
    if (this.tokens < 1) {
      this.refused++;
      return false;
    }
    this.tokens -= 1;
    this.admitted++;
    return true;
  }

  close(): void {
    clearTimeout(this.drainTimer);
    for (const waiter of [...this.queues.reconnect.splice(0), ...this.queues.new.splice(0)]) {
      clearTimeout(waiter.timer);
      waiter.reject(overloaded(this.what, 'shutting down'));
    }
  }

  private refill(): void {
    const now = Date.now();
    this.tokens = Math.min(this.policy.burst, this.tokens + ((now - this.lastRefill) / 1000) * this.policy.ratePerSecond);
    this.lastRefill = now;
  }

  private scheduleDrain(): void {
    if (this.drainTimer) return;
    const delay = Math.max(1, Math.ceil(1000 / this.policy.ratePerSecond));
    this.drainTimer = setTimeout(() => {
      this.drainTimer = undefined;
      this.refill();
      while (this.tokens >= 1 && this.queued > 0) {
        const waiter = this.queues.reconnect.shift() ?? this.queues.new.shift()!;
        clearTimeout(waiter.timer);
        this.tokens -= 1;
        this.admitted++;
        waiter.resolve();
      }
      if (this.queued > 0) this.scheduleDrain();
    }, delay);
  }
}
