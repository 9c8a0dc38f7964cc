import { acceptQueue as kernelAcceptQueue, LISTEN_BACKLOG, type AcceptQueue } from './accept-queue.js';
import { RESERVED_FILES } from './open-files.js';

/** How many VM connections a pod holds, over how many processes, and why (docs/CAPACITY.md). */
export interface ConnectionCapacity {
  workers: number;
  /** Connections one process takes before it refuses (its share of the pod's). */
  perProcess: number;
  /** The pod's whole: workers × perProcess, or the operator's maxConnections if lower. */
  pod: number;
  openFileLimit: number;
  reservedFiles: number;
  /** One line for the startup summary and /readyz. */
  reason: string;
  /** The accept queue of each listener, and whether a connect storm of the whole pod fits in it. */
  acceptQueue: AcceptQueue & { fitsPod: boolean; note: string };
}

const count = (value: number) => value.toLocaleString('en-US');

/**
 * Workers: one per core (`cores`: the CPU set capped by the cgroup quota), and more where one
 * process's open-file limit cannot hold `maxConnections`: each connection is a descriptor, and a
 * process keeps RESERVED_FILES for everything else. An explicit worker count wins and caps the pod.
 */
export function planConnectionCapacity(options: { cores: number; openFileLimit: number; workers?: number | undefined; maxConnections: number; acceptQueue?: AcceptQueue }): ConnectionCapacity {
  const { cores, openFileLimit, maxConnections } = options;
  const queue = options.acceptQueue ?? kernelAcceptQueue();
  const byFiles = Math.max(1, openFileLimit - RESERVED_FILES);
  const neededForFiles = maxConnections > 0 ? Math.ceil(maxConnections / byFiles) : 1;
  const workers = options.workers ?? Math.max(cores, neededForFiles);
  const pod = maxConnections > 0 ? Math.min(maxConnections, workers * byFiles) : workers * byFiles;
  const perProcess = Math.ceil(pod / workers);
  const why = [
    `open-file limit ${count(openFileLimit)} per process, ${RESERVED_FILES} kept for admin, upstream and files`,
    ...(maxConnections > 0 ? [`maxConnections ${count(maxConnections)}${maxConnections > pod ? ` (more than ${workers} workers can hold)` : ''}`] : []),
    options.workers !== undefined ? `workers ${workers} as configured` : workers > cores ? `${workers} workers for the open-file limit on ${cores} cores` : `a worker per core (${cores})`,
  ];
  return {
    workers, perProcess, pod, openFileLimit, reservedFiles: RESERVED_FILES,
    reason: `${count(pod)} connections: ${workers} × ${count(perProcess)} (${why.join('; ')})`,
    acceptQueue: { ...queue, fitsPod: queue.length >= pod, note: acceptQueueNote(queue, pod) },
  };
}

/**
 * Every worker takes connections from one listening socket (the shared one, or the coordinator's),
 * so one queue holds what a storm opens before the workers accept it: a storm larger than the queue
 * waits out TCP retransmissions unless somaxconn is raised (docs/CAPACITY.md "The accept queue").
 */
function acceptQueueNote(queue: AcceptQueue, pod: number): string {
  const source = queue.limitedBy === 'somaxconn' ? 'net.core.somaxconn' : 'the backlog asked for';
  const base = `${count(queue.length)} per listener (${source})`;
  if (queue.length >= pod || queue.limitedBy === 'backlog') return base;
  return `${base}: a reconnect storm of more than ${count(queue.length)} VMs at once overflows it and waits out TCP retransmissions; raise net.core.somaxconn to ${count(Math.min(pod, LISTEN_BACKLOG))} (docs/CAPACITY.md)`;
}
