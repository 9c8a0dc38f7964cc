import type { Registry } from 'prom-client';
import { scrapedCounter } from './scraped-counter.js';
import type { WorkloadEntryController } from '../k8s/workload-entry-controller.js';

/** Auto-registration's metrics, named after istiod's auto_registration_* ones. */
export function registerWorkloadEntryMetrics(registry: Registry, controller: WorkloadEntryController): void {
  const { stats } = controller;
  const counter = (name: string, help: string, read: () => number) => scrapedCounter(registry, `meshrelay_${name}`, help, read);
  counter('auto_registration_success_total', 'WorkloadEntries created by auto-registration', () => stats.created);
  counter('auto_registration_updates_total', 'WorkloadEntries taken over or refreshed on connect', () => stats.updated);
  counter('auto_registration_unregister_total', 'WorkloadEntries marked disconnected', () => stats.unregistered);
  counter('auto_registration_deletes_total', 'WorkloadEntries deleted after the grace period or by the sweep', () => stats.deleted);
  counter('auto_registration_errors_total', 'Auto-registration writes that failed', () => stats.errors);
  counter('workload_entry_health_updates_total', 'Healthy conditions written to WorkloadEntries', () => stats.healthUpdates);
}
