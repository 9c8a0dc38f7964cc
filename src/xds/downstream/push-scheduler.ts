import { atEndOfTurn } from '../end-of-turn.js';
import { pushRank } from '../protocol/type-urls.js';

/** CDS, EDS, LDS, RDS: the types whose initial push order matters for make-before-break. */
const ORDERED_TYPES = 4;
const INITIAL_ORDER_WAIT_MS = 2000;

/** What the scheduler pushes to: one stream. */
export interface PushTarget {
  /** The stream's send queue is full: nothing more is written until it drains. */
  readonly full: boolean;
  /** The types the stream subscribes to. */
  types(): Iterable<string>;
  /** Whether the source has sent the type at all yet. */
  isInitialized(typeUrl: string): boolean;
  /** Builds and writes what is due for the type; false when the stream is full or was ended. */
  push(typeUrl: string): boolean;
}

/**
 * When a stream's types are pushed: dirty types are flushed once per turn, in CDS → EDS → LDS → RDS
 * order, and not while the stream's send queue is full. A stream that stops reading keeps only
 * "which types are dirty"; when it drains it is sent the latest state, never a queue of old ones.
 */
export class PushScheduler {
  private readonly dirty = new Set<string>();
  private readonly scheduleFlush = atEndOfTurn(() => this.flush());
  private waitingForDrain = false;
  private stopped = false;
  private readonly orderingDeadline = new Map<string, number>();
  /** Types whose earlier types had all arrived once: the initial order no longer holds them back. */
  private readonly ordered = new Set<string>();

  constructor(private readonly target: PushTarget) {}

  markDirty(typeUrl: string): void {
    this.dirty.add(typeUrl);
    this.scheduleFlush();
  }

  /** The stream's send queue drained. */
  drained(): void {
    if (!this.waitingForDrain) return;
    this.waitingForDrain = false;
    this.flush();
  }

  stop(): void {
    this.stopped = true;
  }

  private flush(): void {
    if (this.stopped || this.dirty.size === 0) return;
    if (this.target.full) {
      this.waitingForDrain = true;
      return;
    }
    // One dirty type (a push to a stream that is up to date otherwise) needs no ordering.
    const due = this.dirty.size === 1 ? [this.dirty.values().next().value!] : [...this.dirty].sort((a, b) => pushRank(a) - pushRank(b));
    for (const typeUrl of due) {
      if (this.mustWaitForEarlierType(typeUrl)) continue;
      this.dirty.delete(typeUrl);
      if (!this.target.push(typeUrl)) {
        this.waitingForDrain = true;
        return;
      }
    }
  }

  /**
   * Make-before-break on the initial push (CDS, EDS, LDS, RDS; Envoy's xds_protocol "eventual
   * consistency considerations"): a type waits while an earlier type the stream asked for has not
   * arrived from the source yet — bounded, so a source that never answers one type cannot hold
   * back the others.
   */
  private mustWaitForEarlierType(typeUrl: string): boolean {
    if (this.ordered.has(typeUrl)) return false;
    const rank = pushRank(typeUrl);
    if (rank === 0 || rank >= ORDERED_TYPES) return false;
    let waiting = false;
    let earlierSubscribed = 0;
    for (const other of this.target.types()) {
      if (pushRank(other) >= rank) continue;
      earlierSubscribed++;
      if (!this.target.isInitialized(other)) waiting = true;
    }
    if (!waiting) {
      this.orderingDeadline.delete(typeUrl);
      // Every earlier type subscribed and arrived: nothing can hold this one back any more.
      if (earlierSubscribed === rank) this.ordered.add(typeUrl);
      return false;
    }
    let deadline = this.orderingDeadline.get(typeUrl);
    if (deadline === undefined) {
      deadline = Date.now() + INITIAL_ORDER_WAIT_MS;
      this.orderingDeadline.set(typeUrl, deadline);
      setTimeout(() => this.markDirty(typeUrl), INITIAL_ORDER_WAIT_MS + 1).unref();
    }
    return Date.now() < deadline;
  }
}
