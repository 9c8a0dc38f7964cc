import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { NodeMessage } from '../../src/xds/protocol/envelopes.js';
import { pinToCpus } from '../process-stats.js';
import { once } from './bench-servers.js';
import type { ClientTls } from './envoy-client.js';
import { clientNode } from './fleet.js';
import { sourceAddress } from './fleet-layout.js';
import type { WorkerCommand, WorkerProgress, WorkerSamples } from './worker.js';
import type { XdsBenchOptions } from './xds-bench-types.js';

const here = path.dirname(fileURLToPath(import.meta.url));

type FleetOptions = Pick<XdsBenchOptions, 'clients' | 'groups' | 'workers' | 'protocol' | 'nackFraction' | 'clientsPerAddress' | 'clientCpus' | 'timeoutSeconds' | 'onProgress'>;
type Counter = keyof Omit<WorkerProgress, 'type' | 'watchId' | 'lastError'>;

/** How the clients present themselves: their node, and over TLS which of the credentials. */
export interface FleetIdentity {
  node?: (index: number) => NodeMessage;
  credentials?: ClientTls[];
  credentialOf?: (index: number) => number;
}

/**
 * The simulated VMs of one run, spread over load-generator processes (bench/xds/worker.ts): starts
 * them, sends them commands, adds up what they report, and waits on it.
 */
export class FleetProcesses {
  private readonly workers: Array<{ child: ChildProcess; progress: WorkerProgress }> = [];
  /** The watch `watched` counts for (a worker's report for an older one counts nothing). */
  watchId = 0;

  /** `errors`: where the workers' error messages and counts by kind are gathered (a result's). */
  constructor(private readonly options: FleetOptions, private readonly label: string,
    readonly errors: { messages: string[]; kinds: Record<string, number> } = { messages: [], kinds: {} }) {}

  /** Forks the load generators; client i connects to targets[i % targets.length]. */
  start(targets: string[], identity: FleetIdentity = {}): void {
    const { clients, groups, workers, protocol, nackFraction, clientsPerAddress } = this.options;
    const nackEvery = nackFraction > 0 ? Math.max(1, Math.round(1 / nackFraction)) : 0;
    const node = identity.node ?? ((index: number) => clientNode(index, groups));
    for (let w = 0; w < workers; w++) {
      const child = fork(path.join(here, 'worker.js'), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      pinToCpus(child.pid, this.options.clientCpus);
      const worker = { child, progress: emptyProgress() };
      child.on('message', (message: WorkerProgress | WorkerSamples) => { if (message.type === 'progress') worker.progress = message; });
      const specs = [];
      for (let i = w; i < clients; i += workers) {
        specs.push({
          index: i, node: node(i), nack: nackEvery > 0 && i % nackEvery === nackEvery - 1, source: sourceAddress(i, clientsPerAddress),
          ...(identity.credentialOf ? { tls: identity.credentialOf(i) } : {}),
        });
      }
      child.send({ type: 'init', targets, protocol, clients: specs, ...(identity.credentials ? { credentials: identity.credentials } : {}) } satisfies WorkerCommand);
      this.workers.push(worker);
    }
  }

  total(field: Counter): number {
    if (field === 'watched') return this.workers.reduce((sum, worker) => sum + (worker.progress.watchId === this.watchId ? worker.progress.watched : 0), 0);
    return this.workers.reduce((sum, worker) => sum + worker.progress[field], 0);
  }

  /** The longest any load-generator process's event loop was late (ms). */
  maxLoopDelayMs(): number {
    return Math.max(0, ...this.workers.map((worker) => worker.progress.loopDelayMaxMs));
  }

  lastError(): string | undefined {
    return this.workers.map((worker) => worker.progress.lastError).find((kind) => kind !== undefined);
  }

  broadcast(command: WorkerCommand): void {
    for (const worker of this.workers) worker.child.send(command);
  }

  /** Each worker's samples since the last collect; their errors are kept here too. */
  async collect(): Promise<WorkerSamples[]> {
    const replies = this.workers.map((worker) => once<WorkerSamples>(worker.child, (m) => m.type === 'samples'));
    this.broadcast({ type: 'collect' });
    const samples = await Promise.all(replies);
    for (const s of samples) {
      this.errors.messages.push(...s.errorMessages.slice(0, 5));
      for (const [kind, count] of Object.entries(s.errorKinds)) this.errors.kinds[kind] = (this.errors.kinds[kind] ?? 0) + count;
    }
    return samples;
  }

  /** Waits until `done()` or the timeout, reporting progress; returns the elapsed ms or undefined on timeout. */
  async until(phase: string, done: () => boolean, started: number, pollMs = 20): Promise<number | undefined> {
    const deadline = started + this.options.timeoutSeconds * 1000;
    let lastReport = 0;
    for (;;) {
      const now = performance.now();
      if (done()) return now - started;
      if (now > deadline) return undefined;
      if (now - lastReport > 500) {
        lastReport = now;
        const elapsed = ((now - started) / 1000).toFixed(1);
        this.options.onProgress?.(`[${this.label}] ${phase}: connected ${this.total('connected')}/${this.options.clients}, configured ${this.total('configured')}, `
          + `watched ${this.total('watched')}, served ${this.total('served')}, moved ${this.total('moved')} (back ${this.total('back')}), responses ${this.total('responses')}, ${(this.total('bytes') / 1048576).toFixed(1)} MiB, errors ${this.total('errors')}, ${elapsed}s`
          + `, load-generator loop delay max ${Math.round(this.maxLoopDelayMs())} ms${this.lastError() ? ` (last: ${this.lastError()})` : ''}`);
      }
      await sleep(pollMs);
    }
  }

  /** Waits until no client has received anything for a second (at most the timeout), so hashes compare settled config. */
  async quiet(): Promise<void> {
    let last = -1;
    await this.until('settling', () => {
      const responses = this.total('responses');
      if (responses === last) return true;
      last = responses;
      return false;
    }, performance.now(), 1000);
  }

  async stop(): Promise<void> {
    await Promise.all(this.workers.map(async (worker) => {
      const exited = new Promise((resolve) => worker.child.once('exit', resolve));
      worker.child.send({ type: 'stop' } satisfies WorkerCommand);
      await exited;
    }));
  }
}

function emptyProgress(): WorkerProgress {
  return { type: 'progress', connected: 0, configured: 0, responses: 0, bytes: 0, errors: 0, nacks: 0, reconnects: 0, watched: 0, watchId: 0, served: 0, moved: 0, back: 0, loopDelayMaxMs: 0 };
}
