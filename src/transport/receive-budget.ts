/**
 * Bytes of partly received messages held across every call of the process (a declared message is
 * buffered until it is whole). One budget for all listeners: many streams each holding a large
 * unfinished message would otherwise grow memory without bound before any of them is admitted.
 */
export class ReceiveBudget {
  held = 0;
  /** Calls ended because taking their bytes would have passed the budget. */
  refusals = 0;

  constructor(readonly maxBytes: number) {}

  /** Takes `bytes` more; false (and nothing taken) when that would pass the budget. */
  take(bytes: number): boolean {
    if (this.held + bytes > this.maxBytes) {
      this.refusals++;
      return false;
    }
    this.held += bytes;
    return true;
  }

  give(bytes: number): void {
    this.held = Math.max(0, this.held - bytes);
  }
}
