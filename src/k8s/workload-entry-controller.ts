import { setTimeout as sleep } from 'node:timers/promises';
import { RelayError } from '../errors.js';
import type { Logger } from '../log.js';
import type { CallerIdentity } from '../xds/view.js';
import { Backoff, type BackoffPolicy } from '../transport/backoff.js';
import { isConflict, isNotFound, isRetryable, type WorkloadEntryStore } from './workload-entry-store.js';
import {
  Annotation, workloadEntryFromGroup, workloadEntryName, type IstioCondition, type RegisteringProxy, type WorkloadEntry,
} from './workload-entry-template.js';
import { identityMismatch } from '../identity.js';
import type { ReplicaLeases } from './replica-leases.js';

export interface WorkloadEntryControllerOptions {
  /** Written to `istio.io/workloadController`: the relay pod's name. */
  instanceId: string;
  /** How long a disconnected VM's entry is kept for it to come back (istiod: 10 s). */
  gracePeriodMs: number;
  /** Period of the sweep for stale entries (istiod: 10 × the grace period). */
  sweepIntervalMs: number;
  /** VMs' maximum connection age; connected entries older than 2.25× this are stale (0 = never). */
  maxConnectionAgeMs: number;
  /** The replicas' leases: an entry whose controlling replica's lease expired is the others' to clean up. */
  leases?: ReplicaLeases;
  backoff: BackoffPolicy;
  /** Attempts per write before giving up (the sweep catches what is left). */
  maxAttempts?: number;
}

/** One VM stream's claim on its WorkloadEntry. */
export interface Registration {
  readonly proxy: RegisteringProxy;
  readonly name: string;
  readonly connectedAt: Date;
  /** Settles when the entry is written; rejects with a RelayError when the VM may not register. */
  readonly done: Promise<void>;
  /**
   * Settles once the VM may be served: its entry exists and it may control it (a VM taking its
   * entry over from a dead replica is served while the takeover is written), or, for a new entry,
   * once it is created. Rejects as `done` does when the VM may not register.
   */
  readonly admitted: Promise<void>;
}

/** istiod's time format (Go RFC3339Nano: trailing fractional zeros dropped). */
export function formatTime(date: Date): string {
  return date.toISOString().replace(/\.?0+Z$/, 'Z');
}

function parseTime(value: string | undefined): number | undefined {
  if (!value) return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : ms;
}

/** Like istiod (ValidateWorkloadEntryIdentity): only a VM proven to be the entry's namespace and service account may control it. */
function checkCanControl(caller: CallerIdentity | undefined, entry: WorkloadEntry): void {
  const deny = (message: string) => new RelayError('MR_PERMISSION_DENIED', message);
  if (!caller) throw deny('registration of WorkloadEntry requires a verified identity (connect on the TLS listener with a workload certificate or token)');
  const claimed = { namespace: entry.metadata.namespace, serviceAccount: entry.spec.serviceAccount ?? '' };
  const mismatch = identityMismatch(caller, claimed);
  if (mismatch === 'namespace') throw deny(`registration of WorkloadEntry namespace mismatch: "${caller.namespace}" vs "${claimed.namespace}"`);
  if (mismatch) throw deny(`registration of WorkloadEntry service account mismatch: "${caller.serviceAccount}" vs "${claimed.serviceAccount}"`);
}

const entryKey = (namespace: string, name: string) => `${namespace}/${name}`;

/**
 * WorkloadEntry auto-registration and health for VMs the relay serves in group mode, where istiod
 * never sees them (docs/ISTIO-FACTS.md). It follows istiod's controller: the entry is created from the
 * WorkloadGroup on connect, marked disconnected on the last disconnect and deleted after the grace
 * period unless the VM came back; `istio.io/workloadController` and `istio.io/connectedAt` decide
 * which relay replica (or istiod) controls an entry, so replicas never fight over one. Writes to one
 * entry run in order; conflicts and outages are retried with backoff.
 */
export class WorkloadEntryController {
  /** Live VM streams per entry on this replica. */
  private readonly connections = new Map<string, number>();
  private readonly chains = new Map<string, Promise<void>>();
  private readonly cleanupTimers = new Set<NodeJS.Timeout>();
  private readonly sweepTimer: NodeJS.Timeout;
  private closed = false;
  /** What the controller wrote, for the metrics (admin/workload-entry-metrics.ts). */
  readonly stats = { created: 0, updated: 0, unregistered: 0, deleted: 0, errors: 0, healthUpdates: 0 };

  constructor(
    private readonly store: WorkloadEntryStore,
    private readonly options: WorkloadEntryControllerOptions,
    private readonly log: Logger,
  ) {
    this.sweepTimer = setInterval(() => void this.sweep().catch((error: unknown) => this.log.warn({ err: (error as Error).message }, 'WorkloadEntry sweep failed')), options.sweepIntervalMs);
    this.sweepTimer.unref();
  }

  /** A VM stream asking for auto-registration arrived; its entry is created or taken over. */
  connect(proxy: RegisteringProxy, caller: CallerIdentity | undefined, connectedAt = new Date()): Registration {
    const name = workloadEntryName(proxy);
    const key = entryKey(proxy.namespace, name);
    this.connections.set(key, (this.connections.get(key) ?? 0) + 1);
    let admit!: () => void;
    const admittedEarly = new Promise<void>((resolve) => { admit = resolve; });
    const done = this.serialize(key, 'register', () => this.register(name, proxy, caller, connectedAt, admit));
    done.catch(() => this.stats.errors++);
    return { proxy, name, connectedAt, done, admitted: Promise.race([admittedEarly, done]) };
  }

  /** The VM's stream ended; on its last stream here the entry is marked disconnected, then cleaned up. */
  disconnect(registration: Registration, disconnectedAt = new Date()): void {
    const key = entryKey(registration.proxy.namespace, registration.name);
    const remaining = (this.connections.get(key) ?? 1) - 1;
    if (remaining > 0) {
      this.connections.set(key, remaining);
      return;
    }
    this.connections.delete(key);
    void this.serialize(key, 'unregister', () => this.unregister(registration, disconnectedAt)).catch(() => this.stats.errors++);
  }

  /** istio-agent's health report (sent on transitions) becomes the entry's Healthy condition. */
  reportHealth(registration: Registration, healthy: boolean, message: string, at = new Date()): void {
    const key = entryKey(registration.proxy.namespace, registration.name);
    void this.serialize(key, 'health', () => this.writeHealth(registration, healthy, message, at)).catch(() => this.stats.errors++);
  }

  /** Waits (at most `timeoutMs`) for queued writes, so a stopping replica records its disconnects. */
  async close(timeoutMs = 5000): Promise<void> {
    clearInterval(this.sweepTimer);
    this.options.leases?.close();
    for (const timer of this.cleanupTimers) clearTimeout(timer);
    this.cleanupTimers.clear();
    await Promise.race([Promise.allSettled([...this.chains.values()]), sleep(timeoutMs, undefined, { ref: false })]);
    this.closed = true;
  }

  /**
   * Deletes auto-registered entries that nobody will clean up otherwise, and marks those of dead
   * replicas disconnected (for deletion a grace period later); returns how many it deleted.
   */
  async sweep(now = Date.now()): Promise<number> {
    await this.options.leases?.refresh(now);
    const outcomes = (await this.store.listAll()).map((entry) => {
      const verdict = this.staleness(entry, now);
      if (!verdict) return Promise.resolve(false);
      const { namespace, name } = entry.metadata;
      const task = verdict === 'orphaned' ? () => this.adoptOrphan(namespace, name).then(() => false) : () => this.deleteIfStale(namespace, name);
      return this.serialize(entryKey(namespace, name), verdict === 'orphaned' ? 'adopt' : 'sweep', task).catch(() => {
        this.stats.errors++;
        return false;
      });
    });
    return (await Promise.all(outcomes)).filter(Boolean).length;
  }

  private async register(name: string, proxy: RegisteringProxy, caller: CallerIdentity | undefined, connectedAt: Date, admit: () => void): Promise<void> {
    const existing = await this.store.getEntry(proxy.namespace, name);
    if (existing) {
      checkCanControl(caller, existing);
      // The entry is in the mesh already: istiod registers before it serves so that the proxy's
      // workload exists (pilot/pkg/xds/ads.go initConnection), which it does. When a replica dies,
      // thousands of its VMs come back at once, and waiting for each takeover's write would hold
      // their config behind the API server.
      admit();
      // The VM has since connected elsewhere (another replica, or istiod): that one controls it.
      if ((parseTime(existing.metadata.annotations?.[Annotation.connectedAt]) ?? 0) > connectedAt.getTime()) return;
      try {
        await this.store.replace(this.withConnectMeta(existing, connectedAt));
      } catch (error) {
        // Deleted since it was read (a sweep judged it stranded before this takeover reached the
        // API server): the VM is being served, so it gets its entry back.
        if (!isNotFound(error)) throw error;
        await this.createFromGroup(name, proxy, caller, connectedAt);
        return;
      }
      this.stats.updated++;
      this.log.info({ entry: `${proxy.namespace}/${name}`, proxy: proxy.id }, 'took over auto-registered WorkloadEntry');
      return;
    }
    await this.createFromGroup(name, proxy, caller, connectedAt);
  }

  private async createFromGroup(name: string, proxy: RegisteringProxy, caller: CallerIdentity | undefined, connectedAt: Date): Promise<void> {
    const group = await this.store.getGroup(proxy.namespace, proxy.group);
    if (!group) {
      throw new RelayError('MR_REGISTRATION_FAILED', `auto-registration WorkloadEntry of ${proxy.id} failed: cannot find WorkloadGroup ${proxy.namespace}/${proxy.group}`);
    }
    const entry = workloadEntryFromGroup(name, proxy, group);
    checkCanControl(caller, entry);
    await this.store.create(this.withConnectMeta(entry, connectedAt));
    this.stats.created++;
    this.log.info({ entry: `${proxy.namespace}/${name}`, proxy: proxy.id, healthChecks: proxy.healthChecked }, 'auto-registered WorkloadEntry');
  }

  private withConnectMeta(entry: WorkloadEntry, connectedAt: Date): WorkloadEntry {
    const annotations: Record<string, string> = { ...entry.metadata.annotations, [Annotation.workloadController]: this.options.instanceId, [Annotation.connectedAt]: formatTime(connectedAt) };
    delete annotations[Annotation.disconnectedAt];
    return { ...entry, metadata: { ...entry.metadata, annotations } };
  }

  private async unregister(registration: Registration, disconnectedAt: Date): Promise<void> {
    const { proxy, name, connectedAt } = registration;
    // A VM that came back to this replica while the write was queued keeps its entry.
    if (this.connections.has(entryKey(proxy.namespace, name))) return;
    const entry = await this.store.getEntry(proxy.namespace, name);
    if (!entry) return;
    const annotations = { ...entry.metadata.annotations };
    const lastConnected = parseTime(annotations[Annotation.connectedAt]);
    if (lastConnected !== undefined && lastConnected > connectedAt.getTime()) return;
    if (annotations[Annotation.workloadController] !== this.options.instanceId) return;
    delete annotations[Annotation.connectedAt];
    annotations[Annotation.disconnectedAt] = formatTime(disconnectedAt);
    await this.store.replace({ ...entry, metadata: { ...entry.metadata, annotations } });
    this.stats.unregistered++;
    this.log.info({ entry: `${proxy.namespace}/${name}`, proxy: proxy.id, graceMs: this.options.gracePeriodMs }, 'VM disconnected; WorkloadEntry kept for the grace period');
    this.cleanUpAfterGrace(proxy.namespace, name);
  }

  /**
   * An entry whose replica died with its VM connected: this replica records the disconnect the
   * dead one could not, and deletes the entry a grace period later unless the VM has come back.
   * Deleting at once would race a survivor's takeover still on its way to the API server.
   */
  private async adoptOrphan(namespace: string, name: string): Promise<void> {
    const entry = await this.store.getEntry(namespace, name);
    if (!entry || this.staleness(entry, Date.now()) !== 'orphaned') return;
    const annotations: Record<string, string> = { ...entry.metadata.annotations, [Annotation.workloadController]: this.options.instanceId, [Annotation.disconnectedAt]: formatTime(new Date()) };
    delete annotations[Annotation.connectedAt];
    await this.store.replace({ ...entry, metadata: { ...entry.metadata, annotations } });
    this.stats.unregistered++;
    this.log.info({ entry: `${namespace}/${name}`, deadController: entry.metadata.annotations?.[Annotation.workloadController], graceMs: this.options.gracePeriodMs }, 'WorkloadEntry of a replica that died marked disconnected; kept for the grace period');
    this.cleanUpAfterGrace(namespace, name);
  }

  private cleanUpAfterGrace(namespace: string, name: string): void {
    if (this.closed) return;
    const timer = setTimeout(() => {
      this.cleanupTimers.delete(timer);
      void this.serialize(entryKey(namespace, name), 'cleanup', () => this.deleteIfStale(namespace, name)).catch(() => this.stats.errors++);
    }, this.options.gracePeriodMs);
    timer.unref();
    this.cleanupTimers.add(timer);
  }

  private async deleteIfStale(namespace: string, name: string): Promise<boolean> {
    const entry = await this.store.getEntry(namespace, name);
    if (!entry || this.staleness(entry, Date.now()) !== 'stale') return false;
    await this.store.delete(entry);
    this.stats.deleted++;
    this.log.info({ entry: `${namespace}/${name}` }, 'deleted auto-registered WorkloadEntry');
    return true;
  }

  /**
   * istiod's rules make an entry `stale` (to delete): disconnected longer than the grace period, or
   * connected for longer than 2.25× the maximum connection age. The relay adds two: an entry this
   * replica controls but holds no stream for (a disconnect write that was lost) is stale after the
   * grace period; one whose controlling replica's lease expired a sweep interval ago (it died without
   * marking its VMs disconnected) is `orphaned`: marked disconnected first (adoptOrphan).
   */
  private staleness(entry: WorkloadEntry, now: number): 'stale' | 'orphaned' | undefined {
    const annotations = entry.metadata.annotations ?? {};
    if (!annotations[Annotation.autoRegistrationGroup]) return undefined;
    // A VM connected here keeps its entry, even while its takeover is still being written.
    if (this.connections.has(entryKey(entry.metadata.namespace, entry.metadata.name))) return undefined;
    const connectedAt = annotations[Annotation.connectedAt];
    if (connectedAt) {
      const since = now - (parseTime(connectedAt) ?? now);
      const maxAge = this.options.maxConnectionAgeMs;
      if (maxAge > 0 && since > maxAge * 2.25) return 'stale';
      const controller = annotations[Annotation.workloadController] ?? '';
      const controllerGone = controller === this.options.instanceId ? undefined : this.options.leases?.expiredAt(controller, now);
      // A sweep interval, not a grace period: a failover's takeovers can be queued behind the API
      // server for longer than the grace, and istiod itself waits 2.25 × the connection age.
      if (controllerGone !== undefined) return now - controllerGone >= Math.max(this.options.gracePeriodMs, this.options.sweepIntervalMs) ? 'orphaned' : undefined;
      return controller === this.options.instanceId && since > this.options.gracePeriodMs ? 'stale' : undefined;
    }
    if (annotations[Annotation.disconnectedAt] === undefined) return undefined;
    // An unreadable time cannot prove the grace period is still running.
    const disconnectedAt = parseTime(annotations[Annotation.disconnectedAt]);
    return disconnectedAt === undefined || now - disconnectedAt >= this.options.gracePeriodMs ? 'stale' : undefined;
  }

  private async writeHealth(registration: Registration, healthy: boolean, message: string, at: Date): Promise<void> {
    const { proxy, name } = registration;
    await registration.done;
    const entry = await this.store.getEntry(proxy.namespace, name);
    if (!entry) throw new RelayError('MR_WORKLOAD_ENTRY_NOT_FOUND', `health of ${proxy.id}: WorkloadEntry ${proxy.namespace}/${name} not found`);
    // Only the controlling replica speaks for the VM's health.
    if (entry.metadata.annotations?.[Annotation.workloadController] !== this.options.instanceId) return;
    const conditions = entry.status?.conditions ?? [];
    const previous = conditions.find((condition) => condition.type === 'Healthy');
    if (previous && (parseTime(previous.lastProbeTime) ?? 0) > at.getTime()) return;
    const status = healthy ? 'True' : 'False';
    const condition: IstioCondition = {
      type: 'Healthy',
      status,
      lastProbeTime: at.toISOString(),
      lastTransitionTime: previous?.status === status ? previous.lastTransitionTime : at.toISOString(),
      ...(healthy || !message ? {} : { message }),
    };
    const newStatus = { ...entry.status, conditions: [...conditions.filter((c) => c.type !== 'Healthy'), condition] };
    await this.store.replaceStatus({ ...entry, status: newStatus });
    this.stats.healthUpdates++;
    this.log.info({ entry: `${proxy.namespace}/${name}`, healthy, message }, 'WorkloadEntry health updated');
  }

  /** Runs writes to one entry in order; retries conflicts and outages with backoff. */
  private serialize<T>(key: string, what: string, task: () => Promise<T>): Promise<T> {
    const previous = this.chains.get(key) ?? Promise.resolve();
    const result = previous.then(() => this.withRetries(key, what, task));
    const settled = result.then(() => undefined, () => undefined);
    this.chains.set(key, settled);
    void settled.then(() => {
      if (this.chains.get(key) === settled) this.chains.delete(key);
    });
    return result;
  }

  private async withRetries<T>(key: string, what: string, task: () => Promise<T>): Promise<T> {
    const backoff = new Backoff(this.options.backoff);
    const maxAttempts = this.options.maxAttempts ?? 6;
    for (let attempt = 1; ; attempt++) {
      try {
        return await task();
      } catch (error) {
        // A VM already being served keeps trying for its entry as long as it stays connected here:
        // giving up would leave it in the mesh without one (a failover's burst can hold the API
        // server's answers back for longer than the attempts last).
        const persist = what === 'register' && this.connections.has(key);
        const retry = !(error instanceof RelayError) && isRetryable(error) && (attempt < maxAttempts || persist) && !this.closed;
        const level = isConflict(error) && retry ? 'debug' : 'warn';
        this.log[level]({ entry: key, op: what, attempt, err: (error as Error).message, willRetry: retry }, 'WorkloadEntry write failed');
        if (!retry) throw error instanceof RelayError ? error : new RelayError('MR_UPSTREAM_UNAVAILABLE', `WorkloadEntry ${key}: ${(error as Error).message}`, { cause: error });
        await sleep(backoff.nextDelayMs());
      }
    }
  }
}
