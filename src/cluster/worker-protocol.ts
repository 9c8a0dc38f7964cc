import type { CaSubsystem } from '../ca/ca-setup.js';
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
}

export const WORKER_SPEC_ENV = 'MR_WORKER';

export type ToWorker =
  | { kind: 'connection'; listener: ListenerName }
  | { kind: 'peers'; admin: string[] }
  | { kind: 'stop'; graceMs: number };

export type FromWorker =
  | { kind: 'ready'; admin: string; ca?: CaSubsystem['summary']; listeners: Partial<Record<ListenerName, ListenAddress>> }
  | { kind: 'closed' };
