import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { NETWORKING_GROUP, NETWORKING_VERSION, type WorkloadEntry, type WorkloadGroup } from './workload-entry-template.js';

/** The API server refused a write because the object changed since it was read (HTTP 409). */
export function isConflict(error: unknown): boolean {
  return (error as { code?: number })?.code === 409;
}

export function isNotFound(error: unknown): boolean {
  return (error as { code?: number })?.code === 404;
}

/** Permanent refusals (bad object, forbidden) are not retried; outages and conflicts are. */
export function isRetryable(error: unknown): boolean {
  const code = (error as { code?: number })?.code;
  return code === undefined || code === 409 || code === 429 || code >= 500;
}

/**
 * WorkloadEntry and WorkloadGroup reads and writes. Every write carries the resourceVersion it was
 * based on, so two relay replicas (or a replica and istiod) never overwrite each other blindly.
 */
export class WorkloadEntryStore {
  private readonly api: CustomObjectsApi;

  constructor(kubeConfig: KubeConfig) {
    this.api = kubeConfig.makeApiClient(CustomObjectsApi);
  }

  private coordinates(plural: 'workloadentries' | 'workloadgroups', namespace: string) {
    return { group: NETWORKING_GROUP, version: NETWORKING_VERSION, plural, namespace };
  }

  async getEntry(namespace: string, name: string): Promise<WorkloadEntry | undefined> {
    try {
      return await this.api.getNamespacedCustomObject({ ...this.coordinates('workloadentries', namespace), name }) as WorkloadEntry;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async getGroup(namespace: string, name: string): Promise<WorkloadGroup | undefined> {
    try {
      return await this.api.getNamespacedCustomObject({ ...this.coordinates('workloadgroups', namespace), name }) as WorkloadGroup;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async create(entry: WorkloadEntry): Promise<WorkloadEntry> {
    return await this.api.createNamespacedCustomObject({ ...this.coordinates('workloadentries', entry.metadata.namespace), body: entry }) as WorkloadEntry;
  }

  async replace(entry: WorkloadEntry): Promise<WorkloadEntry> {
    const { namespace, name } = entry.metadata;
    return await this.api.replaceNamespacedCustomObject({ ...this.coordinates('workloadentries', namespace), name, body: entry }) as WorkloadEntry;
  }

  async replaceStatus(entry: WorkloadEntry): Promise<WorkloadEntry> {
    const { namespace, name } = entry.metadata;
    return await this.api.replaceNamespacedCustomObjectStatus({ ...this.coordinates('workloadentries', namespace), name, body: entry }) as WorkloadEntry;
  }

  /** Deletes the entry only if it is still the version that was judged stale. */
  async delete(entry: WorkloadEntry): Promise<void> {
    const { namespace, name, resourceVersion } = entry.metadata;
    try {
      await this.api.deleteNamespacedCustomObject({
        ...this.coordinates('workloadentries', namespace), name, body: { preconditions: { ...(resourceVersion ? { resourceVersion } : {}) } },
      });
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }

  async listAll(): Promise<WorkloadEntry[]> {
    const list = await this.api.listCustomObjectForAllNamespaces({ group: NETWORKING_GROUP, version: NETWORKING_VERSION, plural: 'workloadentries' }) as { items?: WorkloadEntry[] };
    return list.items ?? [];
  }
}
