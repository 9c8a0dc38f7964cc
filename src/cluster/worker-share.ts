import { instanceName, type ServeConfig } from '../config/schema.js';
import { cpuLimit } from '../limits/cpu-limit.js';
import { defaultBufferBudgetMb } from '../limits/memory-limit.js';
import type { WorkerSpec } from './worker-protocol.js';
import path from 'node:path';

/**
 * One worker's config: the limits the operator gave for the pod are shared among the workers, so
 * the pod as a whole keeps them (admission rates, budgets, group cap, CA concurrency). Each worker
 * is its own WorkloadEntry controller and control-plane instance (`<name>-w<index>`), as each
 * istiod replica is, and keeps its own snapshot file beside the others (docs/ARCHITECTURE.md).
 */
export function workerConfig(config: ServeConfig, spec: WorkerSpec): ServeConfig {
  const share = (value: number) => Math.max(1, Math.floor(value / spec.count));
  const shareOf = (value: number) => value / spec.count;
  return {
    ...config,
    instanceId: `${instanceName(config)}-w${spec.index}`,
    // Internal: the coordinator's admin port reads every worker's views and metrics from here.
    adminListen: '127.0.0.1:0',
    // The coordinator keeps /readyz 503 for the readiness window before it tells workers to stop.
    readinessDrainSeconds: 0,
    admissionRate: shareOf(config.admissionRate),
    admissionBurst: share(config.admissionBurst),
    ...(config.admissionQueue !== undefined ? { admissionQueue: share(config.admissionQueue) } : {}),
    groupCreationRate: shareOf(config.groupCreationRate),
    groupCreationBurst: share(config.groupCreationBurst),
    maxGroups: share(config.maxGroups),
    responseMemoMb: Math.max(1, shareOf(config.responseMemoMb)),
    maxBufferedMb: Math.max(1, shareOf(config.maxBufferedMb ?? defaultBufferBudgetMb())),
    caMaxConcurrent: share(config.caMaxConcurrent),
    caMaxQueued: share(config.caMaxQueued),
    caSigningThreads: config.caSigningThreads ?? Math.min(4, share(cpuLimit())),
    ...(config.cacheSnapshotDir ? { cacheSnapshotDir: path.join(config.cacheSnapshotDir, `worker-${spec.index}`) } : {}),
  };
}
