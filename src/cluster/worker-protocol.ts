import type { CaSubsystem } from '../ca/ca-setup.js';
import type { ConnectionCapacity } from '../limits/connection-capacity.js';
import type { ListenAddress } from '../transport/listen-address.js';

/** Which coordinator listener a connection arrived on. */
export type ListenerName = 'xds' | 'tls';

/** What the coordinator tells a worker when it forks it (in the MR_WORKER environment variable). */
export interface WorkerSpec {
  index: number;
  count: number;
  /**
   * The coordinator's bound listeners, whose connections it hands out; absent with `kernel`
   * balance, where the workers accept on one listening socket node:cluster shares among them.
   */
  listeners?: Partial<Record<ListenerName, ListenAddress>>;
  /** The embedded simulated istiod, run once by the coordinator so every worker sees one mesh. */
  embeddedUpstream?: string;
  /** The pod's connection capacity; each worker takes `perProcess` of it. */
  capacity: ConnectionCapacity;
}

export const WORKER_SPEC_ENV = 'MR_WORKER';

export type ToWorker =
  | { kind: 'connection'; listener: ListenerName }
  | { kind: 'peers'; admin: string[] }
  /** Kernel balance: accept on the shared socket, or stop while the others hold fewer (accept-governor.ts). */
  | { kind: 'accept'; accepting: boolean }
  | { kind: 'stop'; graceMs: number };

export type FromWorker =
  | { kind: 'ready'; admin: string; ca?: CaSubsystem['summary']; listeners: Partial<Record<ListenerName, ListenAddress>> }
  | { kind: 'closed' }
  /** Kernel balance: the connections this worker holds (at most every LOAD_REPORT_MS). */
  | { kind: 'load'; open: number }
  /** Kernel balance: this worker now accepts, or has stopped (the answer to `accept`). */
  | { kind: 'accepting'; accepting: boolean };
