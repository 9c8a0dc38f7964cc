import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../log.js';
import { isConflict, isNotFound } from './workload-entry-store.js';

const LEASES = { group: 'coordination.k8s.io', version: 'v1', plural: 'leases' } as const;
const MANAGED_BY = 'app.kubernetes.io/managed-by=meshrelay-workload-entries';
/** A lease this long expired (a replica gone for good) is deleted by whichever replica sees it. */
const FORGET_AFTER_MS = 60 * 60 * 1000;

interface Lease {
  metadata: { name: string; namespace: string; resourceVersion?: string; labels?: Record<string, string> };
  spec: { holderIdentity?: string; leaseDurationSeconds?: number; renewTime?: string; acquireTime?: string };
}

/** Go's metav1.MicroTime (RFC 3339 with microseconds), as the API server stores Lease times. */
const microTime = (ms: number) => new Date(ms).toISOString().replace(/Z$/, '000Z');

/** A Lease name for an instance ID (a pod name, `<pod>-w<i>` for a worker): DNS-1123, 63 characters at most. */
export function leaseName(instanceId: string): string {
  return `meshrelay-${instanceId.toLowerCase().replace(/[^a-z0-9-]/g, '-')}`.slice(0, 63).replace(/-+$/, '');
}

/**
 * Each replica that controls WorkloadEntries holds a coordination.k8s.io Lease named for its
 * instance and renews it; the others read whose has expired. istiod has no such signal: an entry
 * whose controller died without writing `istio.io/disconnectedAt` is only cleaned up once its
 * `connectedAt` is older than the maximum connection age (pilot/pkg/autoregistration
 * `shouldCleanupEntry`). Relay replicas do better: an entry whose controller's lease expired is
 * treated as disconnected at the expiry (docs/KUBERNETES.md "Replicas").
 */
export class ReplicaLeases {
  private readonly api: CustomObjectsApi;
  private readonly name: string;
  private timer: NodeJS.Timeout | undefined;
  private acquiredAt = Date.now();
  /** Lease expiry (ms) per holder, from the last list. */
  private expiries = new Map<string, number>();

  constructor(kubeConfig: KubeConfig, private readonly options: { namespace: string; instanceId: string; durationMs: number }, private readonly log: Logger) {
    this.api = kubeConfig.makeApiClient(CustomObjectsApi);
    this.name = leaseName(options.instanceId);
  }

  /** Holds the lease now and renews it every third of its duration until close. */
  async start(): Promise<void> {
    this.acquiredAt = Date.now();
    await this.renew().catch((error: unknown) => this.log.warn({ err: (error as Error).message, lease: this.name }, 'cannot write this replica\'s lease; other replicas will not clean up after it if it dies'));
    this.timer = setInterval(() => void this.renew().catch((error: unknown) => this.log.warn({ err: (error as Error).message, lease: this.name }, 'lease renewal failed')), Math.max(100, this.options.durationMs / 3));
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
  }

  /**
   * Reads every replica's lease; whose expired long ago (and so holds nothing any more) is deleted.
   * Called before a sweep, so `expiredAt` answers from one consistent read.
   */
  async refresh(now = Date.now()): Promise<void> {
    const list = await this.api.listNamespacedCustomObject({ ...LEASES, namespace: this.options.namespace, labelSelector: MANAGED_BY }) as { items?: Lease[] };
    const expiries = new Map<string, number>();
    for (const lease of list.items ?? []) {
      const holder = lease.spec.holderIdentity;
      const renewed = Date.parse(lease.spec.renewTime ?? '');
      if (!holder || Number.isNaN(renewed)) continue;
      const expiry = renewed + (lease.spec.leaseDurationSeconds ?? 0) * 1000;
      expiries.set(holder, expiry);
      if (holder !== this.options.instanceId && now - expiry > FORGET_AFTER_MS) {
        await this.api.deleteNamespacedCustomObject({ ...LEASES, namespace: this.options.namespace, name: lease.metadata.name, body: { preconditions: { resourceVersion: lease.metadata.resourceVersion ?? '' } } })
          .catch((error: unknown) => { if (!isNotFound(error) && !isConflict(error)) throw error; });
      }
    }
    this.expiries = expiries;
  }

  /** When the replica `instanceId`'s lease expired, if it is a relay replica whose lease has; else undefined (alive, or not a relay). */
  expiredAt(instanceId: string, now = Date.now()): number | undefined {
    const expiry = this.expiries.get(instanceId);
    return expiry !== undefined && expiry < now ? expiry : undefined;
  }

  private async renew(): Promise<void> {
    const now = Date.now();
    const body: Lease = {
      metadata: { name: this.name, namespace: this.options.namespace, labels: { 'app.kubernetes.io/managed-by': 'meshrelay-workload-entries' } },
      spec: { holderIdentity: this.options.instanceId, leaseDurationSeconds: Math.ceil(this.options.durationMs / 1000), renewTime: microTime(now), acquireTime: microTime(this.acquiredAt) },
    };
    const coordinates = { ...LEASES, namespace: this.options.namespace };
    try {
      const current = await this.api.getNamespacedCustomObject({ ...coordinates, name: this.name }) as Lease;
      await this.api.replaceNamespacedCustomObject({ ...coordinates, name: this.name, body: { ...body, metadata: { ...body.metadata, resourceVersion: current.metadata.resourceVersion } } });
    } catch (error) {
      if (!isNotFound(error)) throw error;
      await this.api.createNamespacedCustomObject({ ...coordinates, body });
    }
  }
}
