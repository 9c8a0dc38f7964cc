import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import test, { type ExecutionContext } from 'ava';
import { freePort } from '../../bench/free-port.js';
import type { NodeMessage } from '../../src/xds/protocol/envelopes.js';
import { haproxyUnavailable, startHaproxy, type LoadBalancer } from '../../bench/lb/haproxy.js';
import { eventually } from '../helpers/harness.js';
import { assertSameConfig, directProxy, istiodConnections, relayTlsClient } from '../helpers/interop.js';
import { ConfigProxy } from '../helpers/proxy-config.js';
import { ISTIOD_SERVER_NAME, istioPeers, realIstioUnavailable, startRealMesh, type RealMesh } from '../helpers/real-istio.js';
import { serveProcess, type Serving } from '../helpers/serve-process.js';
import { installVmMeshFixture, realVmNode } from '../helpers/vm-mesh-fixture.js';

// Relay replicas as deploy/ runs them (group mode, auto-registration, a state dir each), behind a
// real L4 load balancer (HAProxy, TCP, least connections, /readyz checks), in front of the real
// istiod and kube-apiserver: what VMs, istiod and the WorkloadEntries see when replicas are
// spread over, killed, restarted one by one, added and removed (docs/KUBERNETES.md "Replicas").
const unavailable = realIstioUnavailable('istioctl') ?? haproxyUnavailable();
const interop = unavailable ? test.skip : test.serial;
if (unavailable) console.warn(`skipping the relay replica tests: ${unavailable}`);

const GROUP = 'vmfleet';
/** Short enough for a test, in the proportions of the defaults (10 s grace, 15 s lease). */
const GRACE_SECONDS = 2;
const LEASE_SECONDS = 3;
const entries = '/apis/networking.istio.io/v1/namespaces/vm/workloadentries';

interface Replica { name: string; port: number; adminPort: number; stateDir: string; serving?: Serving }

let mesh: RealMesh;
let servingCert: { cert: string; key: string };
let balancer: LoadBalancer;
const replicas: Replica[] = [];

async function startReplica(replica: Replica): Promise<void> {
  replica.serving = await serveProcess([
    '--workers', '1', '--mode', 'group', '--ca-mode', 'off',
    '--tls-listen', `127.0.0.1:${replica.port}`, '--tls-cert-file', servingCert.cert, '--tls-key-file', servingCert.key, '--tls-client-ca-file', mesh.rootCertFile,
    '--token-review', '--kubeconfig', mesh.kube.kubeconfig, '--address-config-source', 'kubernetes',
    '--upstream', mesh.istiod.secureGrpc, '--upstream-ca-file', mesh.rootCertFile, '--upstream-server-name', ISTIOD_SERVER_NAME,
    '--auto-registration', '--instance-id', replica.name, '--workload-entry-grace-period-seconds', String(GRACE_SECONDS), '--replica-lease-seconds', String(LEASE_SECONDS),
    '--state-dir', replica.stateDir, '--shutdown-grace-seconds', '3', '--readiness-drain-seconds', '1',
    // Fixed ports, as a pod's are: the load balancer knows each replica by them across restarts.
    '--admin-listen', `127.0.0.1:${replica.adminPort}`,
  ]);
}

async function newReplica(index: number): Promise<Replica> {
  return { name: `meshrelay-r${index}`, port: await freePort(), adminPort: await freePort(), stateDir: mkdtempSync(path.join(tmpdir(), `meshrelay-replica-${index}-`)) };
}

test.before(async (t) => {
  if (unavailable) return;
  t.timeout(300_000);
  mesh = await startRealMesh();
  await installVmMeshFixture(mesh);
  await mesh.apply([{
    apiVersion: 'networking.istio.io/v1', kind: 'WorkloadGroup', metadata: { name: GROUP, namespace: 'vm' },
    spec: { metadata: { labels: { app: GROUP } }, template: { serviceAccount: 'vm-sa', network: 'vm-net' } },
  }]);
  servingCert = mesh.relayServingCertificate();
  for (let i = 0; i < 4; i++) replicas.push(await newReplica(i));
  // Three replicas serve; the fourth is declared to the load balancer but joins only when scaled out.
  await Promise.all(replicas.slice(0, 3).map(startReplica));
  balancer = await startHaproxy(replicas.map((r, i) => ({ name: r.name, port: r.port, adminPort: r.adminPort, enabled: i < 3 })));
  await eventually(() => balancer.servers(), (servers) => servers.filter((s) => s.status === 'UP').length === 3, 15_000);
});
test.after.always(async () => {
  for (const vm of fleet) vm.close();
  for (const replica of replicas) replica.serving?.child.kill('SIGKILL');
  await balancer?.close();
  await mesh?.close();
});

/** vm-fleet-i; `registering`: with AUTO_REGISTER_GROUP, as the VMs of the fleet connect. */
const vmNode = (i: number, registering = true): NodeMessage => realVmNode({ name: `vm-fleet-${i}`, ip: `10.9.8.${i}`, labels: { app: GROUP }, extra: registering ? { AUTO_REGISTER_GROUP: GROUP } : {} });
const entryName = (i: number) => `${GROUP}-10.9.8.${i}-vm-net`;

/**
 * A VM as Envoy behind istio-agent: through the load balancer over TLS, reconnecting whenever its
 * stream is ended. The fleet's VMs live through every test (closed after the last); others end with their test.
 */
async function fleetVm(t: ExecutionContext | undefined, i: number, target = balancer.address): Promise<ConfigProxy> {
  const token = await mesh.token('vm', 'vm-sa');
  const vm = new ConfigProxy(target, 'delta', vmNode(i), {
    connect: () => relayTlsClient(mesh, target), reconnect: target === balancer.address, headers: { authorization: `Bearer ${token}`, clusterid: 'Kubernetes' },
  });
  if (t) t.teardown(() => vm.close());
  else fleet.push(vm);
  return vm;
}

/**
 * vm-fleet-i straight to istiod, compared with what it holds through the replicas, then closed (so
 * istiod's streams are the relays' again). Without AUTO_REGISTER_GROUP, as the relay's group stream
 * reaches istiod: else istiod would register the VM itself, and mark its entry disconnected when the
 * comparison ends.
 */
async function assertIstiodConfig(t: ExecutionContext, i: number, relayed: ConfigProxy): Promise<void> {
  const direct = await directProxy(t, mesh, vmNode(i, false), 'delta');
  await assertSameConfig(t, direct, relayed);
  direct.close();
}

/** Which replica serves each VM now (the replicas' own /debug/syncz). */
async function placement(): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const replica of replicas) {
    if (!replica.serving || replica.serving.child.exitCode !== null || replica.serving.child.signalCode !== null) continue;
    const syncz = await fetch(`http://127.0.0.1:${replica.adminPort}/debug/syncz`).then((r) => r.json() as Promise<Array<{ proxy: string }>>, () => []);
    for (const entry of syncz) if (entry.proxy.includes('vm-fleet-')) out.set(entry.proxy.split('~')[2]!.split('.')[0]!, replica.name);
  }
  return out;
}

/** The fleet's WorkloadEntries by VM name: uid (recreated or not), controller, connected or not. */
async function fleetEntries(): Promise<Map<string, { uid: string; controller: string; connectedAt?: string; disconnectedAt?: string }>> {
  const list = await mesh.kube.request('GET', entries);
  const out = new Map();
  for (const item of list.items as any[]) {
    if (!item.metadata.name.startsWith(`${GROUP}-`)) continue;
    const a = item.metadata.annotations ?? {};
    out.set(item.metadata.name, { uid: item.metadata.uid, controller: a['istio.io/workloadController'], connectedAt: a['istio.io/connectedAt'], disconnectedAt: a['istio.io/disconnectedAt'] });
  }
  return out;
}

/** istiod's xDS streams that come from the fleet's relays (a group's stream carries a member's node). */
async function fleetStreamsAtIstiod(): Promise<number> {
  return (await istiodConnections(mesh)).filter((entry) => entry.proxy.includes('vm-fleet-')).length;
}

const VMS = [1, 2, 3, 4, 5, 6];
const fleet: ConfigProxy[] = [];

interop('spread: VMs through the load balancer land on every replica with istiod\'s config; istiod sees one stream per replica for their group; every VM has one WorkloadEntry, controlled by the replica serving it; istioctl proxy-status over the replicas lists each VM once', async (t) => {
  t.timeout(180_000);
  for (const i of VMS) await fleetVm(undefined, i);
  await Promise.all(fleet.map((vm) => vm.settled()));
  const placed = await eventually(placement, (p) => p.size === VMS.length, 20_000);
  t.deepEqual([...new Set(placed.values())].sort(), ['meshrelay-r0', 'meshrelay-r1', 'meshrelay-r2'], 'least connections put VMs on all three');
  await assertIstiodConfig(t, 1, fleet[0]!);
  t.is(await eventually(fleetStreamsAtIstiod, (n) => n === 3, 15_000), 3, 'groups × replicas streams at istiod, for six VMs');
  const registered = await eventually(fleetEntries, (e) => e.size === VMS.length && [...e.values()].every((entry) => entry.connectedAt), 20_000);
  for (const i of VMS) t.is(registered.get(entryName(i))?.controller, placed.get(`vm-fleet-${i}`), `vm-fleet-${i}'s entry is controlled by its replica`);

  // istioctl asks the API server for a token of istio-system/default (istioctl/pkg/multixds).
  await mesh.kube.request('POST', '/api/v1/namespaces/istio-system/serviceaccounts', { metadata: { name: 'default' } }).catch(() => undefined);
  const listed: string[] = [];
  for (const replica of replicas.slice(0, 3)) {
    const { stdout } = await promisify(execFile)(istioPeers.istioctl, ['proxy-status', '--xds-address', `127.0.0.1:${replica.port}`, '--kubeconfig', mesh.kube.kubeconfig, '--istioNamespace', 'istio-system'], { timeout: 60_000 });
    listed.push(...stdout.split('\n').filter((line) => line.includes('vm-fleet-')).map((line) => line.split(/\s+/)[0]!));
  }
  t.deepEqual(listed.map((id) => id.split('~')[2]!.split('.')[0]).sort(), VMS.map((i) => `vm-fleet-${i}`).sort(), 'each VM once, on the replica that serves it');
});

interop('kill -9 of a replica: its VMs reconnect through the load balancer to the survivors and get istiod\'s config again; their WorkloadEntries are taken over, not deleted or recreated; a VM that does not come back has its entry cleaned up by a survivor', async (t) => {
  t.timeout(180_000);
  const before = await fleetEntries();
  const placed = await placement();
  const victim = replicas.find((r) => [...placed.values()].includes(r.name))!;
  // A VM connected to the victim directly (not through the load balancer), which will not come back.
  const stranded = await fleetVm(t, 9, `127.0.0.1:${victim.port}`);
  await stranded.settled();
  await eventually(fleetEntries, (e) => e.get(entryName(9))?.controller === victim.name, 20_000);
  const moving = [...placed].filter(([, name]) => name === victim.name).map(([vm]) => vm);
  const killedAt = Date.now();
  victim.serving!.child.kill('SIGKILL');
  await victim.serving!.exit;
  const after = await eventually(placement, (p) => VMS.every((i) => p.has(`vm-fleet-${i}`)), 30_000);
  t.log(`all ${VMS.length} VMs served again ${Date.now() - killedAt} ms after the kill (${moving.length} moved: ${moving.join(', ')})`);
  t.false([...after.values()].includes(victim.name));
  for (const vm of fleet) await vm.settled();
  await assertIstiodConfig(t, 1, fleet[0]!);
  const taken = await eventually(fleetEntries, (e) => VMS.every((i) => e.get(entryName(i))?.controller === after.get(`vm-fleet-${i}`)), 20_000);
  for (const i of VMS) {
    const entry = taken.get(entryName(i))!;
    t.is(entry.uid, before.get(entryName(i))!.uid, `vm-fleet-${i}'s entry is the same object (not deleted and recreated)`);
    t.falsy(entry.disconnectedAt, `vm-fleet-${i} is connected`);
  }
  // The stranded VM's entry: its controller died without marking it. A survivor's sweep (every
  // 10 × grace) a sweep interval after the lease expired marks it disconnected, and the survivor
  // deletes it a grace period later.
  const cleaned = await eventually(fleetEntries, (e) => !e.has(entryName(9)), 90_000);
  t.false(cleaned.has(entryName(9)));
  t.log(`the stranded VM's entry was deleted ${Date.now() - killedAt} ms after the kill`);
  stranded.close();
  await startReplica(victim);
  await eventually(() => balancer.servers(), (servers) => servers.find((s) => s.name === victim.name)?.status === 'UP', 15_000);
});

interop('rolling restart: SIGTERM one replica at a time (readiness drain, GOAWAY, streams ended UNAVAILABLE); every VM is served again each time, nothing is re-registered, and istiod\'s stream count stays bounded', async (t) => {
  t.timeout(240_000);
  const before = await fleetEntries();
  let maxStreams = 0;
  const sampler = setInterval(() => void fleetStreamsAtIstiod().then((n) => { maxStreams = Math.max(maxStreams, n); }, () => undefined), 250);
  t.teardown(() => clearInterval(sampler));
  const reconnectsBefore = fleet.reduce((sum, vm) => sum + vm.reconnects, 0);
  for (const replica of replicas.slice(0, 3)) {
    const stoppedAt = Date.now();
    replica.serving!.child.kill('SIGTERM');
    t.is(await replica.serving!.exit, 0, `${replica.name} drained and exited cleanly`);
    await eventually(placement, (p) => VMS.every((i) => p.has(`vm-fleet-${i}`)), 30_000);
    t.log(`${replica.name}: every VM served again ${Date.now() - stoppedAt} ms after SIGTERM`);
    await startReplica(replica);
    await eventually(() => balancer.servers(), (servers) => servers.find((s) => s.name === replica.name)?.status === 'UP', 15_000);
  }
  clearInterval(sampler);
  for (const vm of fleet) await vm.settled();
  await assertIstiodConfig(t, 2, fleet[1]!);
  t.true(fleet.reduce((sum, vm) => sum + vm.reconnects, 0) > reconnectsBefore, 'the VMs of each stopped replica reconnected');
  const after = await fleetEntries();
  for (const i of VMS) t.is(after.get(entryName(i))?.uid, before.get(entryName(i))?.uid, `vm-fleet-${i} was never re-registered`);
  t.true(maxStreams <= 2 * 3, `istiod held at most ${maxStreams} fleet streams (one per replica, and a replica's lingering ones while its VMs moved)`);
});

interop('scale out and in: a fourth replica takes new VMs (existing ones stay where they are until their connection ends); when it leaves, its VMs move and nothing is lost', async (t) => {
  t.timeout(180_000);
  const fourth = replicas[3]!;
  await startReplica(fourth);
  await balancer.setEnabled(fourth.name, true);
  await eventually(() => balancer.servers(), (servers) => servers.find((s) => s.name === fourth.name)?.status === 'UP', 15_000);
  const placedBefore = await placement();
  const late = [await fleetVm(t, 7), await fleetVm(t, 8)];
  await Promise.all(late.map((vm) => vm.settled()));
  const placed = await eventually(placement, (p) => p.has('vm-fleet-7') && p.has('vm-fleet-8'), 20_000);
  // After the rolling restart the last replica restarted is empty too: the two new VMs go to the two empty ones.
  t.true([placed.get('vm-fleet-7'), placed.get('vm-fleet-8')].includes(fourth.name), 'least connections sends new VMs to the new, empty replica');
  for (const [vm, name] of placedBefore) t.is(placed.get(vm), name, `${vm} did not move`);
  const before = await fleetEntries();
  fourth.serving!.child.kill('SIGTERM');
  await fourth.serving!.exit;
  await balancer.setEnabled(fourth.name, false);
  const after = await eventually(placement, (p) => [...VMS, 7, 8].every((i) => p.has(`vm-fleet-${i}`)), 30_000);
  t.false([...after.values()].includes(fourth.name));
  for (const vm of late) await vm.settled();
  const entriesAfter = await eventually(fleetEntries, (e) => [7, 8].every((i) => e.get(entryName(i))?.controller === after.get(`vm-fleet-${i}`)), 20_000);
  for (const i of [...VMS, 7, 8]) t.is(entriesAfter.get(entryName(i))?.uid, before.get(entryName(i))?.uid, `vm-fleet-${i} kept its entry`);
});
