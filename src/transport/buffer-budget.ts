/** A stream whose buffered bytes the budget counts, and which it may end to stay within itself. */
export interface BudgetHolder {
  /** Bytes this stream is responsible for: its unfinished message plus its share of queued frames. */
  heldBytes(): number;
  /** Ends the stream now, releasing everything it holds (RESOURCE_EXHAUSTED to the client). */
  evict(): void;
  /** When (performance.now()) the stream last moved bytes: a frame taken by the peer, or data received. */
  readonly progressAt: number;
}

/** A stream that has moved no bytes for this long is stalled, and is ended before any that moves. */
export const STALLED_AFTER_MS = 1000;

/**
 * Bytes held for streams across the whole process: partly received messages and responses queued to
 * streams that do not read. Envoy's overload manager is the model (envoy docs, "Overload manager",
 * reset streams on heap pressure): past the budget the stream holding the most is ended, so many
 * slow or hostile streams together cannot exhaust memory while healthy ones keep being served.
 * A response frame written to many streams is one buffer (serialize-once fan-out) and counts once;
 * each stream is charged its share of it.
 */
export class BufferBudget {
  private readonly holders = new Set<BudgetHolder>();
  /** Queued frames → how many streams still have them queued. */
  private readonly frames = new Map<Buffer, number>();
  private receiving = 0;
  private queued = 0;
  /** Streams ended to keep within the budget. */
  evictions = 0;

  /** `onRelease` hears of bytes no longer held (a MemoryReclaimer: they are garbage only from then on). */
  constructor(readonly maxBytes: number, private readonly onRelease: (bytes: number) => void = () => {}) {}

  get heldBytes(): number {
    return this.receiving + this.queued;
  }

  get queuedBytes(): number {
    return this.queued;
  }

  get receivingBytes(): number {
    return this.receiving;
  }

  add(holder: BudgetHolder): void {
    this.holders.add(holder);
  }

  remove(holder: BudgetHolder): void {
    this.holders.delete(holder);
  }

  /** Changes the bytes of unfinished messages by `delta`. */
  receive(delta: number): void {
    const before = this.receiving;
    this.receiving = Math.max(0, before + delta);
    if (this.receiving < before) this.onRelease(before - this.receiving);
  }

  queueFrame(frame: Buffer): void {
    const holders = this.frames.get(frame) ?? 0;
    if (holders === 0) this.queued += frame.length;
    this.frames.set(frame, holders + 1);
  }

  releaseFrame(frame: Buffer): void {
    const holders = this.frames.get(frame);
    if (holders === undefined) return;
    if (holders > 1) {
      this.frames.set(frame, holders - 1);
      return;
    }
    this.frames.delete(frame);
    this.queued -= frame.length;
    this.onRelease(frame.length);
  }

  /** One stream's share of a queued frame. */
  shareOf(frame: Buffer): number {
    return frame.length / (this.frames.get(frame) ?? 1);
  }

  /**
   * Ends the streams holding the most until the budget holds; the requester (a stream whose
   * unfinished message grew) competes like any other. False when it was one of them.
   */
  enforce(requester?: BudgetHolder): boolean {
    return this.evictUntilFits(requester, 0, false);
  }

  /**
   * Ends the streams holding the most until `bytes` more fit, the requester counted as holding them:
   * a response is not built only for its stream to be ended for it. The requester itself goes only
   * if it is stalled (its earlier responses are stuck), and on a tie the others go first (it has not
   * shown it does not read); a moving requester (a new VM asking for its config) is made room for.
   * False when the requester was ended.
   */
  makeRoom(requester: BudgetHolder | undefined, bytes: number): boolean {
    return this.evictUntilFits(requester, bytes, true);
  }

  /**
   * Stalled streams go first: a VM being sent a large config it reads holds much for a while, and a
   * stream that has moved nothing for a second is the one that is stuck.
   */
  private evictUntilFits(requester: BudgetHolder | undefined, bytes: number, spareMovingRequester: boolean): boolean {
    while (this.heldBytes + bytes > this.maxBytes) {
      const stalledBefore = performance.now() - STALLED_AFTER_MS;
      const largest = this.largestHolder(requester, bytes, stalledBefore)
        ?? (spareMovingRequester
          ? this.largestHolder(undefined, 0, Number.POSITIVE_INFINITY, requester)
          : this.largestHolder(requester, bytes, Number.POSITIVE_INFINITY));
      if (!largest) break;
      this.holders.delete(largest);
      this.evictions++;
      largest.evict();
      if (largest === requester) return false;
    }
    return true;
  }

  /**
   * The holder with the most bytes among those that last moved bytes before `movedBefore`; the
   * requester, counted with `bytes` more, only if it would hold more. `spared` is never chosen.
   */
  private largestHolder(requester: BudgetHolder | undefined, bytes: number, movedBefore: number, spared?: BudgetHolder): BudgetHolder | undefined {
    let largest: BudgetHolder | undefined;
    let largestBytes = 0;
    for (const holder of this.holders) {
      if (holder === requester || holder === spared || holder.progressAt >= movedBefore) continue;
      const held = holder.heldBytes();
      if (held > largestBytes) {
        largest = holder;
        largestBytes = held;
      }
    }
    if (requester && this.holders.has(requester) && requester.progressAt < movedBefore && requester.heldBytes() + bytes > largestBytes) return requester;
    return largestBytes > 0 ? largest : undefined;
  }
}
