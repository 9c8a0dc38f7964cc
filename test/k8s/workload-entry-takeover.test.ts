import test from 'ava';
import { defaultBackoff } from '../../src/transport/backoff.js';
import { WorkloadEntryController } from '../../src/k8s/workload-entry-controller.js';
import type { WorkloadEntryStore } from '../../src/k8s/workload-entry-store.js';
import { Annotation, type RegisteringProxy, type WorkloadEntry } from '../../src/k8s/workload-entry-template.js';
import { testLog } from '../helpers/harness.js';

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
