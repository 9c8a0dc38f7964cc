/** How often the loop is expected to come round; lateness beyond it counts as a stall. */
const TICK_MS = 100;

/**
 * The time this process's event loop has spent stalled: a tick that comes late by more than TICK_MS
 * means the process was busy (a connect storm on few cores), reading no socket meanwhile. Timeouts
 * that judge a peer by its silence (keepalive) discount it: an answer that sat unread in the
 * kernel's buffer while the process was busy is not the peer's fault.
 */
export class EventLoopStalls {
  private stalled = 0;
  private last = performance.now();
  private readonly timer: NodeJS.Timeout;

  constructor() {
    this.timer = setInterval(() => {
      const now = performance.now();
      this.stalled += Math.max(0, now - this.last - TICK_MS);
      this.last = now;
    }, TICK_MS);
    this.timer.unref();
  }

  /** Milliseconds stalled since this was made, the stall going on now included. */
  get totalMs(): number {
    return this.stalled + Math.max(0, performance.now() - this.last - TICK_MS);
  }

  close(): void {
    clearInterval(this.timer);
  }
}
