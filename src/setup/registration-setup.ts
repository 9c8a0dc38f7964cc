import { instanceName, replicaNamespace, type ServeConfig } from '../config/schema.js';
import { ReplicaLeases } from '../k8s/replica-leases.js';
import type { Disposer } from '../disposer.js';
import { loadKubeConfig } from '../k8s/kube-client.js';
import { WorkloadEntryController } from '../k8s/workload-entry-controller.js';
import { WorkloadEntryStore } from '../k8s/workload-entry-store.js';
import { WorkloadRegisteringProvider } from '../k8s/workload-registration.js';
import type { Logger } from '../log.js';
import type { BackoffPolicy } from '../transport/backoff.js';
import type { ViewProvider } from '../xds/view.js';

/**
 * WorkloadEntry auto-registration (docs/KUBERNETES.md): with it on, VMs reach their groups through
 * a provider that registers them first.
 */
export function setUpAutoRegistration(
  config: ServeConfig, groups: ViewProvider, backoff: BackoffPolicy, log: Logger, disposer: Disposer,
): { provider: ViewProvider; workloadEntries: WorkloadEntryController | undefined } {
  if (!config.autoRegistration) return { provider: groups, workloadEntries: undefined };
  const graceMs = config.workloadEntryGracePeriodSeconds * 1000;
  const registrationLog = log.child({ component: 'workload-entries' });
  const kubeConfig = loadKubeConfig(config.kubeconfig);
  const leases = new ReplicaLeases(kubeConfig, { namespace: replicaNamespace(config), instanceId: instanceName(config), durationMs: config.replicaLeaseSeconds * 1000 }, registrationLog);
  void leases.start();
  const controller = new WorkloadEntryController(new WorkloadEntryStore(kubeConfig), {
    instanceId: instanceName(config),
    leases,
    gracePeriodMs: graceMs,
    sweepIntervalMs: Math.max(10 * graceMs, 1000),
    maxConnectionAgeMs: config.maxConnectionAgeSeconds * 1000,
    backoff,
  }, registrationLog);
  disposer.defer(() => controller.close(0));
  return { provider: new WorkloadRegisteringProvider(groups, controller, registrationLog), workloadEntries: controller };
}
