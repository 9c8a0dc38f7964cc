import { Worker } from 'node:worker_threads';
import { RelayError, type RelayErrorCode } from '../errors.js';
import type { Logger } from '../log.js';
import { ConcurrencyLimiter } from '../limits/concurrency-limiter.js';
import type { CaBundleWatcher, CaPems } from './ca-bundle.js';
import type { WorkloadIdentity } from '../identity.js';
import type { TtlPolicy } from './local-signer.js';

export type SigningRequest =
  | { kind: 'ca'; pems: CaPems; ttl: TtlPolicy }
  | { kind: 'sign'; id: number; csrPem: string; identity: WorkloadIdentity; seconds: number };

export type SigningReply =
  | { id: number; chain: string[] }
  | { id: number; error: { code: RelayErrorCode; message: string } };

interface Pending {
  resolve: (chain: string[]) => void;
  reject: (error: RelayError) => void;
}

/** Jobs each thread is given at once: enough to keep it busy between replies, few enough to spread them. */
const JOBS_PER_THREAD = 4;

/**
 * Workload CSRs signed on worker threads (docs/CA.md): parsing, checking the CSR's signature and
 * signing cost milliseconds each, and thousands at once on the event loop would stall every VM's
 * xDS. At most threads × 4 are in the threads; up to `maxQueued` wait; beyond, RESOURCE_EXHAUSTED.
 * A thread that dies fails its jobs with UNAVAILABLE (the agent retries) and is replaced.
 */
export class SigningPool {
  private readonly threads: Array<{ worker: Worker; pending: Map<number, Pending> }> = [];
  private readonly limiter: ConcurrencyLimiter;
  private nextId = 0;
  private closed = false;

  constructor(
    private readonly ca: CaBundleWatcher,
    private readonly ttl: TtlPolicy,
    threads: number,
    maxQueued: number,
    private readonly log: Logger,
  ) {
    this.limiter = new ConcurrencyLimiter(threads * JOBS_PER_THREAD, maxQueued, 'local CA signing');
    for (let index = 0; index < threads; index++) this.threads.push(this.spawn());
    ca.onReload(() => { for (const thread of this.threads) this.sendCa(thread.worker); });
  }

  sign(csrPem: string, identity: WorkloadIdentity, seconds: number): Promise<string[]> {
    return this.limiter.run(() => new Promise<string[]>((resolve, reject) => {
      if (this.closed) {
        reject(new RelayError('MR_CA_UNAVAILABLE', 'the relay is shutting down'));
        return;
      }
      const thread = this.threads.reduce((least, candidate) => (candidate.pending.size < least.pending.size ? candidate : least));
      const id = ++this.nextId;
      thread.pending.set(id, { resolve, reject });
      thread.worker.postMessage({ kind: 'sign', id, csrPem, identity, seconds } satisfies SigningRequest);
    }));
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.threads.map((thread) => thread.worker.terminate()));
  }

  private spawn(): { worker: Worker; pending: Map<number, Pending> } {
    const worker = new Worker(new URL('./signing-worker.js', import.meta.url));
    const thread = { worker, pending: new Map<number, Pending>() };
    worker.unref();
    this.sendCa(worker);
    worker.on('message', (reply: SigningReply) => {
      const pending = thread.pending.get(reply.id);
      if (!pending) return;
      thread.pending.delete(reply.id);
      if ('chain' in reply) pending.resolve(reply.chain);
      else pending.reject(new RelayError(reply.error.code, reply.error.message));
    });
    worker.on('error', (error) => this.log.error({ err: error.message }, 'signing thread failed'));
    worker.on('exit', () => {
      for (const pending of thread.pending.values()) pending.reject(new RelayError('MR_CA_UNAVAILABLE', 'the signing thread stopped; retry'));
      thread.pending.clear();
      if (this.closed) return;
      const index = this.threads.indexOf(thread);
      if (index >= 0) this.threads[index] = this.spawn();
    });
    return thread;
  }

  private sendCa(worker: Worker): void {
    worker.postMessage({ kind: 'ca', pems: this.ca.bundle.pems, ttl: this.ttl } satisfies SigningRequest);
  }
}
