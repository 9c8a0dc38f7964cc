import v8 from 'node:v8';
import vm from 'node:vm';

export interface MemoryReclaimerOptions {
  /** Bytes released since the last collection that make one worth asking for. */
  thresholdBytes: number;
  /** How long after crossing the threshold (releases come in bursts: a disconnect of many streams). */
  settleMs: number;
  /** Collections are at least this far apart. */
  minIntervalMs: number;
  /** Runs a full collection. */
  collect: () => Promise<void> | void;
}

/**
 * What the buffer budget releases (frames queued to streams that never read, partly received
 * messages) are Buffers outside the V8 heap, freed only when V8 next runs a full collection. After
 * an attack the heap is small and quiet, so V8 may not run one for a long time: the budget counts
 * the bytes as released while the process still holds them, against the container's memory limit
 * (1,000 slow readers ended: 640 MB of such garbage five seconds later, 5 MB after one collection).
 * After a large release the reclaimer asks for one, incremental, at most every `minIntervalMs`.
 */
export class MemoryReclaimer {
  private releasedSince = 0;
  private timer: NodeJS.Timeout | undefined;
  private lastRunAt = Number.NEGATIVE_INFINITY;
  /** Collections asked for (for the metrics). */
  collections = 0;

  constructor(private readonly options: MemoryReclaimerOptions) {}

  released(bytes: number): void {
    this.releasedSince += bytes;
    if (this.releasedSince < this.options.thresholdBytes || this.timer) return;
    const wait = Math.max(this.options.settleMs, this.lastRunAt + this.options.minIntervalMs - performance.now());
    this.timer = setTimeout(() => void this.run(), wait);
    this.timer.unref();
  }

  private async run(): Promise<void> {
    this.timer = undefined;
    this.releasedSince = 0;
    this.lastRunAt = performance.now();
    this.collections++;
    await this.options.collect();
  }

  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/**
 * glibc's malloc serves a large block from its heap once a block that size has been freed (its
 * mmap threshold rises to it), and freed heap memory in the middle is not returned to the system:
 * after 1,000 slow readers were ended and collected the RSS stayed at its 800 MB peak. A fixed
 * threshold keeps blocks of 1 MiB and more (whole responses, their frames) in mappings of their
 * own, returned when freed: 174 MB after the same attack (glibc mallopt(3), M_MMAP_THRESHOLD).
 * Read at process start, so it is set for worker processes and in the image.
 */
export const ALLOCATOR_ENV = { MALLOC_MMAP_THRESHOLD_: String(1024 * 1024) } as const;

/** `env` with the allocator settings it does not set already (an operator's own win). */
export function withAllocatorEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return { ...ALLOCATOR_ENV, ...env };
}

let collector: (() => Promise<void>) | undefined;

/**
 * V8's full collection, incremental so the event loop keeps serving. Node offers it only behind
 * `--expose-gc`; the flag can be set at run time, and a new context then has `gc` (v8 docs,
 * `v8.setFlagsFromString`; V8's `gc({ type, execution })`).
 */
export function fullCollection(): () => Promise<void> {
  if (!collector) {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as (options: { type: 'major'; execution: 'async' }) => Promise<void>;
    collector = () => gc({ type: 'major', execution: 'async' });
  }
  return collector;
}
