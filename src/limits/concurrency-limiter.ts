import { RelayError } from '../errors.js';

/**
 * At most `maxConcurrent` tasks run; up to `maxQueued` wait in arrival order; beyond that a task is
 * refused at once with RESOURCE_EXHAUSTED so clients back off instead of piling up (CSR storms).
 */
export class ConcurrencyLimiter {
  private running = 0;
  private readonly queue: Array<() => void> = [];

  constructor(private readonly maxConcurrent: number, private readonly maxQueued: number, private readonly what: string) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.running >= this.maxConcurrent) {
      if (this.queue.length >= this.maxQueued) {
        throw new RelayError('MR_CA_OVERLOADED', `${this.what}: ${this.maxQueued} requests already queued; retry later`);
      }
      await new Promise<void>((resolve) => this.queue.push(resolve));
    } else {
      this.running++;
    }
    try {
      return await task();
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.running--;
    }
  }

  get stats(): { running: number; queued: number } {
    return { running: this.running, queued: this.queue.length };
  }
}
