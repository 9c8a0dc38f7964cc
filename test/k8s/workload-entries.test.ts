import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import type { ServeConfig } from '../../src/config/schema.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { createDevCa } from '../../src/ca/dev-ca.js';
import { caRig, type CaRig } from '../helpers/ca-rig.js';
import { serveProcess } from '../helpers/serve-process.js';
import { eventually } from '../helpers/harness.js';
import { connectRegisteringVm, rigTarget, type RegisteringVmOptions } from '../helpers/registering-vm.js';
import { kubeApiServerUnavailable, startKubeApiServer, type KubeApiServer } from '../helpers/kube-apiserver.js';

const unavailable = kubeApiServerUnavailable();
const realTest = unavailable ? test.skip : test.serial;
if (unavailable) console.warn(`skipping the WorkloadEntry tests: ${unavailable}`);

const ENTRY = 'vm-app-172.16.0.5-vm-net';
const entries = '/apis/networking.istio.io/v1/namespaces/vm/workloadentries';
let api: KubeApiServer | undefined;

test.before(async () => {
  if (unavailable) return;
  api = await startKubeApiServer();
  await api.installIstioCrds();
  await api.request('POST', '/api/v1/namespaces', { metadata: { name: 'vm' } });
  for (const name of ['vm-sa', 'other-sa']) await api.request('POST', '/api/v1/namespaces/vm/serviceaccounts', { metadata: { name } });
  await api.request('POST', '/apis/networking.istio.io/v1/namespaces/vm/workloadgroups', {
    apiVersion: 'networking.istio.io/v1', kind: 'WorkloadGroup',
    metadata: { name: 'vm-app' },
    spec: {
      metadata: { labels: { app: 'vm-app', team: 'payments' }, annotations: { 'example.com/owner': 'ops' } },
      template: { serviceAccount: 'vm-sa', ports: { http: 8080 }, labels: { app: 'template-app', class: 'vm' } },
    },
  });
});
test.after.always(async () => {
  await api?.close();
});

/** A relay replica with TokenReview against the API server and auto-registration on. */
async function replica(instanceId: string, overrides: Partial<ServeConfig> = {}): Promise<CaRig> {
  return caRig('ec-p256', {
    tlsListen: '127.0.0.1:0', tokenReview: true, kubeconfig: api!.kubeconfig,
    autoRegistration: true, workloadEntryGracePeriodSeconds: 1, instanceId, ...overrides,
  });
}

const connectVm = (r: CaRig, options: RegisteringVmOptions = {}) => connectRegisteringVm(rigTarget(r), api!, options);

const getEntry = () => api!.request('GET', `${entries}/${ENTRY}`).catch(() => undefined);
const annotations = (entry: any): Record<string, string | undefined> => entry?.metadata?.annotations ?? {};
const healthy = (entry: any) => entry?.status?.conditions?.find((c: any) => c.type === 'Healthy');

realTest('a VM in group mode gets the WorkloadEntry istiod would create; health reports flip its Healthy condition; it is deleted after the grace period', async (t) => {
  const r = await replica('meshrelay-a');
  t.teardown(r.close);
  const vm = await connectVm(r, { readinessProbe: true });
  await vm.next(10_000);
  const entry = await eventually(getEntry, (e) => e !== undefined, 10_000);
  const group = await api!.request('GET', '/apis/networking.istio.io/v1/namespaces/vm/workloadgroups/vm-app');
  t.like(entry.spec, { address: '172.16.0.5', network: 'vm-net', serviceAccount: 'vm-sa', ports: { http: 8080 } });
  // Labels: template < WorkloadGroup metadata < the node's LABELS.
  t.deepEqual(entry.spec.labels, { app: 'vm-app', class: 'vm', team: 'payments', version: 'v2' });
  t.deepEqual(entry.metadata.labels, entry.spec.labels);
  t.like(annotations(entry), {
    'istio.io/autoRegistrationGroup': 'vm-app', 'istio.io/workloadController': 'meshrelay-a',
    'example.com/owner': 'ops', 'proxy.istio.io/health-checks-enabled': 'true',
  });
  t.regex(annotations(entry)['istio.io/connectedAt']!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
  t.deepEqual(entry.metadata.ownerReferences, [{ apiVersion: 'networking.istio.io/v1', kind: 'WorkloadGroup', name: 'vm-app', uid: group.metadata.uid, controller: true }]);

  // istio-agent reports health on transitions, as HealthInformation requests on the ADS stream.
  vm.send({ type_url: TypeUrl.healthInformation, error_detail: { code: 2, message: 'readiness probe failed: connection refused' } });
  const failing = await eventually(getEntry, (e) => healthy(e)?.status === 'False', 10_000);
  t.is(healthy(failing).message, 'readiness probe failed: connection refused');
  vm.send({ type_url: TypeUrl.healthInformation });
  const recovered = await eventually(getEntry, (e) => healthy(e)?.status === 'True', 10_000);
  t.is(healthy(recovered).message, undefined);
  t.true(Date.parse(healthy(recovered).lastTransitionTime) >= Date.parse(healthy(failing).lastTransitionTime));

  vm.close();
  const disconnected = await eventually(getEntry, (e) => annotations(e)['istio.io/disconnectedAt'] !== undefined, 10_000);
  t.is(annotations(disconnected)['istio.io/connectedAt'], undefined);
  await eventually(getEntry, (e) => e === undefined, 10_000);
  t.pass();
});

realTest('a VM that reconnects within the grace period keeps its entry; one that moves to another replica is controlled by it, and the old replica lets go', async (t) => {
  const a = await replica('meshrelay-a');
  const b = await replica('meshrelay-b');
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  const first = await connectVm(a);
  await first.next(10_000);
  const created = await eventually(getEntry, (e) => annotations(e)['istio.io/workloadController'] === 'meshrelay-a', 10_000);

  // Same replica, quick reconnect: the entry is never deleted.
  first.close();
  const again = await connectVm(a);
  await again.next(10_000);
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const kept = await getEntry();
  t.is(kept?.metadata.uid, created.metadata.uid);
  t.is(annotations(kept)['istio.io/disconnectedAt'], undefined);

  // The VM moves to replica b (a's stream ends afterwards, as when a drains): b controls it.
  const moved = await connectVm(b);
  await moved.next(10_000);
  await eventually(getEntry, (e) => annotations(e)['istio.io/workloadController'] === 'meshrelay-b', 10_000);
  again.close();
  // a's late disconnect and health report are ignored: the entry stays connected to b.
  await new Promise((resolve) => setTimeout(resolve, 2500));
  const afterMove = await getEntry();
  t.is(afterMove?.metadata.uid, created.metadata.uid);
  t.like(annotations(afterMove), { 'istio.io/workloadController': 'meshrelay-b' });
  t.is(annotations(afterMove)['istio.io/disconnectedAt'], undefined);

  moved.close();
  await eventually(getEntry, (e) => e === undefined, 10_000);
  t.pass();
});

realTest('--workers 2: each worker controls the entries of the VMs it serves; a VM whose new connection lands on the other worker moves its entry there, and the first worker lets go', async (t) => {
  const base = mkdtempSync(path.join(tmpdir(), 'meshrelay-we-workers-'));
  const caDir = path.join(base, 'cacerts');
  createDevCa(caDir, { keyType: 'ec-p256' });
  const relay = await serveProcess(['--workers', '2', '--worker-balance', 'least-connections', '--tls-listen', '127.0.0.1:0',
    '--ca-mode', 'local', '--ca-dir', caDir, '--token-review', '--kubeconfig', api!.kubeconfig, '--auto-registration',
    '--workload-entry-grace-period-seconds', '1', '--instance-id', 'meshrelay-a', '--state-dir', base, '--readiness-drain-seconds', '0']);
  t.teardown(() => relay.child.kill('SIGKILL'));
  const target = { tlsTarget: relay.tls!, rootFile: path.join(caDir, 'root-cert.pem') };
  const controller = async () => annotations(await getEntry())['istio.io/workloadController'];

  const first = await connectRegisteringVm(target, api!);
  await first.next(10_000);
  const created = await eventually(getEntry, (e) => /^meshrelay-a-w[01]$/.test(annotations(e)['istio.io/workloadController'] ?? ''), 10_000);
  const firstWorker = annotations(created)['istio.io/workloadController']!;
  // A second connection while the first is open: least-connections gives it the other worker.
  const moved = await connectRegisteringVm(target, api!);
  await moved.next(10_000);
  const otherWorker = firstWorker.endsWith('w0') ? 'meshrelay-a-w1' : 'meshrelay-a-w0';
  await eventually(controller, (name) => name === otherWorker, 10_000);
  first.close();
  // The first worker's late disconnect is ignored: the entry stays connected to the other one.
  await new Promise((resolve) => setTimeout(resolve, 2500));
  const afterMove = await getEntry();
  t.is(afterMove?.metadata.uid, created.metadata.uid);
  t.is(annotations(afterMove)['istio.io/workloadController'], otherWorker);
  t.is(annotations(afterMove)['istio.io/disconnectedAt'], undefined);
  const syncz = await (await fetch(`${relay.admin}/debug/syncz`)).json() as Array<{ worker: number }>;
  t.deepEqual(syncz.map((entry) => entry.worker), [Number(otherWorker.at(-1))], 'the VM is listed once, on the worker that serves it');

  moved.close();
  await eventually(getEntry, (e) => e === undefined, 10_000);
  t.pass();
});

realTest('registration is refused like istiod refuses it: no WorkloadGroup, or a service account the group does not name', async (t) => {
  const r = await replica('meshrelay-a');
  t.teardown(r.close);
  const noGroup = await connectVm(r, { group: 'missing-group' });
  t.is((await noGroup.status).code, grpc.status.FAILED_PRECONDITION);
  // As istiod (initializeProxy registers before computing anything), a refused VM is sent nothing first.
  t.is(noGroup.responses.length, 0, 'no configuration before the refusal');
  const wrongAccount = await connectVm(r, { serviceAccount: 'other-sa' });
  const status = await wrongAccount.status;
  t.is(status.code, grpc.status.PERMISSION_DENIED);
  t.regex(status.details, /service account mismatch/);
  t.is(wrongAccount.responses.length, 0);
  t.is(await getEntry(), undefined);
  const list = await api!.request('GET', entries);
  t.deepEqual(list.items, []);
});

realTest('in stream mode the relay writes no entry: the VM\'s own stream reaches istiod, which registers it', async (t) => {
  const r = await replica('meshrelay-a', { mode: 'stream' });
  t.teardown(r.close);
  const vm = await connectVm(r);
  await vm.next(10_000);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  t.is(await getEntry(), undefined);
  vm.close();
});

realTest('the sweep deletes entries left connected to this replica without a stream, and disconnected ones past the grace period', async (t) => {
  const r = await replica('meshrelay-a');
  t.teardown(r.close);
  const old = new Date(Date.now() - 60_000).toISOString();
  const base = { apiVersion: 'networking.istio.io/v1', kind: 'WorkloadEntry', spec: { address: '172.16.9.9' } };
  await api!.request('POST', entries, { ...base, metadata: { name: 'orphan', annotations: { 'istio.io/autoRegistrationGroup': 'vm-app', 'istio.io/workloadController': 'meshrelay-a', 'istio.io/connectedAt': old } } });
  await api!.request('POST', entries, { ...base, metadata: { name: 'gone', annotations: { 'istio.io/autoRegistrationGroup': 'vm-app', 'istio.io/disconnectedAt': old } } });
  await api!.request('POST', entries, { ...base, metadata: { name: 'elsewhere', annotations: { 'istio.io/autoRegistrationGroup': 'vm-app', 'istio.io/workloadController': 'istiod-7c9', 'istio.io/connectedAt': old } } });
  await api!.request('POST', entries, { ...base, metadata: { name: 'manual' } });
  t.is(await r.relay.workloadEntries!.sweep(), 2);
  const names = (await api!.request('GET', entries)).items.map((item: any) => item.metadata.name).sort();
  t.deepEqual(names, ['elsewhere', 'manual']);
  for (const name of names) await api!.request('DELETE', `${entries}/${name}`);
});

realTest('a replica that died without marking its VMs disconnected: once its Lease has expired for a sweep interval, a survivor\'s sweep marks its entries disconnected and deletes them a grace period later; a live replica\'s and istiod\'s stay', async (t) => {
  await api!.request('POST', '/api/v1/namespaces', { metadata: { name: 'istio-system' } }).catch(() => undefined);
  const leases = '/apis/coordination.k8s.io/v1/namespaces/istio-system/leases';
  const microTime = (ms: number) => new Date(ms).toISOString().replace(/Z$/, '000Z');
  const lease = (holder: string, renewedMsAgo: number) => ({
    metadata: { name: `meshrelay-${holder}`, labels: { 'app.kubernetes.io/managed-by': 'meshrelay-workload-entries' } },
    spec: { holderIdentity: holder, leaseDurationSeconds: 15, renewTime: microTime(Date.now() - renewedMsAgo) },
  });
  await api!.request('POST', leases, lease('meshrelay-dead', 40_000));
  await api!.request('POST', leases, lease('meshrelay-alive', 0));
  const r = await replica('meshrelay-a');
  t.teardown(r.close);
  const own = await eventually(() => api!.request('GET', `${leases}/meshrelay-meshrelay-a`).catch(() => undefined), (found) => !!found, 5000);
  t.is(own.spec.holderIdentity, 'meshrelay-a', 'the survivor holds a lease of its own');
  const recently = new Date(Date.now() - 2000).toISOString();
  const base = { apiVersion: 'networking.istio.io/v1', kind: 'WorkloadEntry', spec: { address: '172.16.9.8' } };
  const connectedTo = (name: string, controller: string) => api!.request('POST', entries, {
    ...base, metadata: { name, annotations: { 'istio.io/autoRegistrationGroup': 'vm-app', 'istio.io/workloadController': controller, 'istio.io/connectedAt': recently } },
  });
  await connectedTo('on-dead-replica', 'meshrelay-dead');
  await connectedTo('on-live-replica', 'meshrelay-alive');
  await connectedTo('on-istiod', 'istiod-7c9');
  t.is(await r.relay.workloadEntries!.sweep(), 0, 'nothing deleted at once: a survivor\'s takeover may still be on its way');
  const marked = await api!.request('GET', `${entries}/on-dead-replica`);
  t.is(marked.metadata.annotations['istio.io/workloadController'], 'meshrelay-a', 'the dead replica\'s lease expired 25 s ago, past the sweep interval (10 × the 1 s grace): the survivor records the disconnect');
  t.truthy(marked.metadata.annotations['istio.io/disconnectedAt']);
  t.is(marked.metadata.annotations['istio.io/connectedAt'], undefined);
  const listNames = async () => (await api!.request('GET', entries)).items.map((item: any) => item.metadata.name).sort();
  const names = await eventually(listNames, (found: string[]) => found.length === 2, 5000);
  t.deepEqual(names, ['on-istiod', 'on-live-replica'], 'deleted a grace period after it was marked');
  for (const name of names) await api!.request('DELETE', `${entries}/${name}`);
  for (const holder of ['meshrelay-dead', 'meshrelay-alive', 'meshrelay-a']) await api!.request('DELETE', `${leases}/meshrelay-${holder}`).catch(() => undefined);
});
