import test from 'ava';
import { defaultBackoff } from '../../src/transport/backoff.js';
import { WorkloadEntryController } from '../../src/k8s/workload-entry-controller.js';
import type { WorkloadEntryStore } from '../../src/k8s/workload-entry-store.js';
import { Annotation, type RegisteringProxy, type WorkloadEntry } from '../../src/k8s/workload-entry-template.js';
import type { ReplicaLeases } from '../../src/k8s/replica-leases.js';
import { fastBackoff, testLog } from '../helpers/harness.js';

// When a replica dies its VMs come back to the survivors at once, each taking over its existing
// entry: the VM is served as soon as its entry is known to be its own, not after the takeover is
// written (the API server would hold thousands of VMs' config behind a queue of writes).
const proxy: RegisteringProxy = { id: 'sidecar~172.16.0.5~vm-1.vm~vm.svc.cluster.local', group: 'vm-app', namespace: 'vm', address: '172.16.0.5', network: 'vm-net', labels: {}, locality: '', healthChecked: false };
const caller = { trustDomain: 'cluster.local', namespace: 'vm', serviceAccount: 'vm-sa' };
const existing: WorkloadEntry = {
  apiVersion: 'networking.istio.io/v1', kind: 'WorkloadEntry',
  metadata: {
    name: 'vm-app-172.16.0.5-vm-net', namespace: 'vm', uid: 'u1', resourceVersion: '7',
    annotations: { [Annotation.autoRegistrationGroup]: 'vm-app', [Annotation.workloadController]: 'dead-replica', [Annotation.connectedAt]: '2026-12-07T10:00:00Z' },
  },
  spec: { address: '172.16.0.5', serviceAccount: 'vm-sa', network: 'vm-net' },
};

test('a VM taking over its entry from a dead replica is admitted before the takeover is written; the entry is then controlled here', async (t) => {
  let release!: () => void;
  const written: WorkloadEntry[] = [];
  const store = {
    getEntry: async () => existing,
    replace: async (entry: WorkloadEntry) => { await new Promise<void>((resolve) => { release = resolve; }); written.push(entry); return entry; },
    listAll: async () => [],
  } as unknown as WorkloadEntryStore;
  const controller = new WorkloadEntryController(store, { instanceId: 'survivor', gracePeriodMs: 1000, sweepIntervalMs: 60_000, maxConnectionAgeMs: 0, backoff: defaultBackoff }, testLog);
  t.teardown(() => controller.close(0));
  const registration = controller.connect(proxy, caller);
  let done = false;
  void registration.done.then(() => { done = true; });
  await registration.admitted;
  t.false(done, 'admitted while the takeover write is still pending');
  release();
  await registration.done;
  t.is(written[0]?.metadata.annotations?.[Annotation.workloadController], 'survivor');
  t.is(written[0]?.metadata.uid, 'u1', 'the same entry, taken over, not recreated');
});

test('a VM whose identity may not control the entry is refused before anything is written', async (t) => {
  const store = { getEntry: async () => existing, replace: async () => t.fail('nothing is written'), listAll: async () => [] } as unknown as WorkloadEntryStore;
  const controller = new WorkloadEntryController(store, { instanceId: 'survivor', gracePeriodMs: 1000, sweepIntervalMs: 60_000, maxConnectionAgeMs: 0, backoff: defaultBackoff }, testLog);
  t.teardown(() => controller.close(0));
  const registration = controller.connect(proxy, { ...caller, serviceAccount: 'other-sa' });
  await t.throwsAsync(registration.admitted, { message: /service account mismatch/ });
});

/** The API server's optimistic concurrency, in memory: writes based on an old resourceVersion are 409, on a deleted object 404. */
function memoryStore(initial: WorkloadEntry[]) {
  let version = 100;
  const entries = new Map(initial.map((entry) => [entry.metadata.name, structuredClone(entry)]));
  const events: string[] = [];
  const apiError = (code: number) => Object.assign(new Error(`HTTP ${code}`), { code });
  let holdReplaces: Promise<void> | undefined;
  const store = {
    getEntry: async (_namespace: string, name: string) => structuredClone(entries.get(name)),
    listAll: async () => [...entries.values()].map((entry) => structuredClone(entry)),
    replace: async (entry: WorkloadEntry) => {
      if (entry.metadata.annotations?.[Annotation.connectedAt]) await holdReplaces;
      const current = entries.get(entry.metadata.name);
      if (!current) throw apiError(404);
      if (current.metadata.resourceVersion !== entry.metadata.resourceVersion) throw apiError(409);
      const stored = { ...structuredClone(entry), metadata: { ...entry.metadata, uid: current.metadata.uid, resourceVersion: String(++version) } };
      entries.set(entry.metadata.name, stored);
      events.push(`MODIFIED ${entry.metadata.annotations?.[Annotation.workloadController]}`);
      return stored;
    },
    delete: async (entry: WorkloadEntry) => {
      const current = entries.get(entry.metadata.name);
      if (current && current.metadata.resourceVersion !== entry.metadata.resourceVersion) throw apiError(409);
      entries.delete(entry.metadata.name);
      events.push('DELETED');
    },
    create: async (entry: WorkloadEntry) => {
      const stored = { ...structuredClone(entry), metadata: { ...entry.metadata, uid: `new-${++version}`, resourceVersion: String(version) } };
      entries.set(entry.metadata.name, stored);
      events.push('ADDED');
      return stored;
    },
    getGroup: async () => ({ metadata: { name: 'vm-app', namespace: 'vm' }, spec: { template: { serviceAccount: 'vm-sa', network: 'vm-net' } } }),
  };
  return {
    store: store as unknown as WorkloadEntryStore, entries, events,
    /** Holds takeover writes until released: they are queued behind a busy API server. */
    hold: () => { let release!: () => void; holdReplaces = new Promise<void>((resolve) => { release = resolve; }); return () => { holdReplaces = undefined; release(); }; },
  };
}

const deadReplicaLeases = { refresh: async () => undefined, expiredAt: (holder: string, now: number) => (holder === 'dead-replica' ? now - 120_000 : undefined), close: () => undefined } as unknown as ReplicaLeases;
const survivorOptions = (instanceId: string) => ({ instanceId, gracePeriodMs: 300, sweepIntervalMs: 60_000, maxConnectionAgeMs: 0, backoff: fastBackoff, leases: deadReplicaLeases });

test('a survivor\'s sweep does not delete a dead replica\'s entry while another survivor\'s takeover of it is still on its way: it is marked disconnected, and the takeover wins', async (t) => {
  const api = memoryStore([existing]);
  const sweeper = new WorkloadEntryController(api.store, survivorOptions('survivor-a'), testLog);
  const taker = new WorkloadEntryController(api.store, survivorOptions('survivor-b'), testLog);
  t.teardown(() => Promise.all([sweeper.close(0), taker.close(0)]));
  const release = api.hold();
  const registration = taker.connect(proxy, caller);
  await registration.admitted;
  t.is(await sweeper.sweep(), 0, 'nothing deleted: the dead replica\'s entry is only marked disconnected');
  t.is(api.entries.get(existing.metadata.name)?.metadata.annotations?.[Annotation.workloadController], 'survivor-a');
  release();
  await registration.done;
  await new Promise((resolve) => setTimeout(resolve, 600));
  const entry = api.entries.get(existing.metadata.name);
  t.is(entry?.metadata.uid, 'u1', 'the same entry: not deleted, not recreated');
  t.is(entry?.metadata.annotations?.[Annotation.workloadController], 'survivor-b');
  t.truthy(entry?.metadata.annotations?.[Annotation.connectedAt]);
  t.is(entry?.metadata.annotations?.[Annotation.disconnectedAt], undefined);
  t.false(api.events.includes('DELETED'), `events: ${api.events.join(', ')}`);
});

test('a dead replica\'s entry whose VM never comes back is marked disconnected by the sweep and deleted a grace period later', async (t) => {
  const api = memoryStore([existing]);
  const sweeper = new WorkloadEntryController(api.store, survivorOptions('survivor-a'), testLog);
  t.teardown(() => sweeper.close(0));
  await sweeper.sweep();
  t.truthy(api.entries.get(existing.metadata.name)?.metadata.annotations?.[Annotation.disconnectedAt]);
  await new Promise((resolve) => setTimeout(resolve, 600));
  t.false(api.entries.has(existing.metadata.name));
  t.deepEqual(api.events, ['MODIFIED survivor-a', 'DELETED']);
});

test('a takeover that finds its entry deleted since it was read writes it again: a VM being served is never left without an entry', async (t) => {
  const api = memoryStore([existing]);
  const controller = new WorkloadEntryController(api.store, survivorOptions('survivor-b'), testLog);
  t.teardown(() => controller.close(0));
  const release = api.hold();
  const registration = controller.connect(proxy, caller);
  await registration.admitted;
  api.entries.delete(existing.metadata.name);
  release();
  await registration.done;
  const entry = api.entries.get(existing.metadata.name);
  t.truthy(entry, 'the entry exists again');
  t.is(entry?.metadata.annotations?.[Annotation.workloadController], 'survivor-b');
});

test('a connected VM keeps trying for its entry past the attempts a write is given, while the API server keeps failing', async (t) => {
  const api = memoryStore([]);
  let failures = 0;
  const create = api.store.create.bind(api.store);
  Object.assign(api.store, {
    create: async (entry: WorkloadEntry) => {
      if (failures++ < 8) throw Object.assign(new Error('HTTP 503'), { code: 503 });
      return create(entry);
    },
  });
  const controller = new WorkloadEntryController(api.store, { ...survivorOptions('survivor-b'), backoff: { ...fastBackoff, initialMs: 5, maxMs: 20 }, maxAttempts: 3 }, testLog);
  t.teardown(() => controller.close(0));
  const registration = controller.connect(proxy, caller);
  await registration.done;
  t.is(failures, 9, 'eight refusals, then written');
  t.true(api.entries.has(existing.metadata.name));
});
