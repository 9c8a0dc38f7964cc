import { Counter, type Registry } from 'prom-client';
import type { WorkloadEntryController } from '../k8s/workload-entry-controller.js';

/** Auto-registration's metrics, named after istiod's auto_registration_* ones. */
export function registerWorkloadEntryMetrics(registry: Registry, controller: WorkloadEntryController): void {
  const { stats } = controller;
  const counter = (name: string, help: string, read: () => number) => new Counter({
    name: `meshrelay_${name}`, help, registers: [registry],
    collect() { this.reset(); this.inc(read()); },
  });
  counter('auto_registration_success_total', 'WorkloadEntries created by auto-registration', () => stats.created);
  counter('auto_registration_updates_total', 'WorkloadEntries taken over or refreshed on connect', () => stats.updated);
  counter('auto_registration_unregister_total', 'WorkloadEntries marked disconnected', () => stats.unregistered);
  counter('auto_registration_deletes_total', 'WorkloadEntries deleted after the grace period or by the sweep', () => stats.deleted);
  counter('auto_registration_errors_total', 'Auto-registration writes that failed', () => stats.errors);
  counter('workload_entry_health_updates_total', 'Healthy conditions written to WorkloadEntries', () => stats.healthUpdates);
}
