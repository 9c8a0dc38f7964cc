import { createHash } from 'node:crypto';

/**
 * Above this share of the mean a worker takes no more connections by affinity (bounded loads): many
 * VMs behind one address then split 55/45 over two workers, not all on one.
 */
const LOAD_BOUND = 1.1;

/**
 * Picks the worker for a new connection. `source-address`: the worker the client's address hashes
 * to, so a VM that reconnects lands where its lingering stream and its group already are — unless
 * that worker already holds more than 1.1× the mean, when the least-loaded one takes it
 * ("consistent hashing with bounded loads", Mirrokni, Thorup, Zadimoghaddam 2016). Many VMs behind
 * one address (an east-west gateway's passthrough) are therefore still spread over every worker.
 * `least-connections`: always the least-loaded.
 */
export class ConnectionBalancer {
  private readonly open: number[];

  /** `limit`: a worker's share of the pod's connections; one that holds it is not picked. */
  constructor(workers: number, private readonly policy: 'source-address' | 'least-connections', private readonly limit = Number.POSITIVE_INFINITY) {
    this.open = new Array<number>(workers).fill(0);
  }

  /** The worker for a new connection, or undefined if none is alive with room. */
  pick(remoteAddress: string | undefined, alive: (index: number) => boolean): number | undefined {
    const candidates = this.open.map((_, index) => index).filter((index) => alive(index) && this.open[index]! < this.limit);
    if (candidates.length === 0) return undefined;
    const leastLoaded = candidates.reduce((best, index) => (this.open[index]! < this.open[best]! ? index : best));
    let chosen = leastLoaded;
    if (this.policy === 'source-address' && remoteAddress) {
      const preferred = candidates[createHash('sha1').update(remoteAddress).digest().readUInt32BE(0) % candidates.length]!;
      const total = candidates.reduce((sum, index) => sum + this.open[index]!, 0);
      const bound = Math.max(1, (LOAD_BOUND * (total + 1)) / candidates.length);
      if (this.open[preferred]! + 1 <= bound) chosen = preferred;
    }
    this.open[chosen]!++;
    return chosen;
  }

  closed(index: number): void {
    if (this.open[index]! > 0) this.open[index]!--;
  }

  /** A worker that exited holds none of its connections any more. */
  reset(index: number): void {
    this.open[index] = 0;
  }

  connections(): number[] {
    return [...this.open];
  }
}
