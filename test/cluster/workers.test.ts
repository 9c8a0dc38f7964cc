import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import * as grpc from '@grpc/grpc-js';
import { messageType } from '../../src/xds/protocol/protos.js';
import { DebugTypeUrl } from '../../src/xds/protocol/type-urls.js';
import { AdsTestClient, vmNode } from '../helpers/ads-client.js';
import { makeTestPki } from '../helpers/openssl-certs.js';
import { serveProcess as serve } from '../helpers/serve-process.js';

const EDS_NAME = 'outbound|8000||httpbin.bar.svc.cluster.local';

const json = async (url: string) => (await fetch(url)).json() as Promise<any>;

/** A Delta VM that takes CDS and one EDS cluster and ACKs both; returns what it was sent. */
async function configuredVm(xds: string, name: string) {
  const vm = new AdsTestClient(xds, 'delta');
  vm.send({ node: vmNode({ name: `vm-${name}` }), type_url: TypeUrl.cluster } as any);
  const cds: any = await vm.next(20_000);
  vm.send({ type_url: TypeUrl.cluster, response_nonce: cds.nonce } as any);
  vm.send({ type_url: TypeUrl.endpoint, resource_names_subscribe: [EDS_NAME] } as any);
  const eds: any = await vm.nextOfType(TypeUrl.endpoint, 10_000);
  vm.send({ type_url: TypeUrl.endpoint, response_nonce: eds.nonce } as any);
  const content = (response: any) => response.resources.map((r: any) => `${r.name} ${r.version} ${Buffer.from(r.resource.value).toString('base64')}`).sort();
  return { vm, config: { cds: content(cds), eds: content(eds) } };
}

const pidAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test('--workers 2: VMs spread over both workers get identical config; admin views, metrics and the status page cover every worker; SIGTERM drains all; the snapshots they wrote serve a restart with istiod unreachable', async (t) => {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'meshrelay-workers-'));
  const snapshotDir = path.join(stateDir, 'snapshots');
  const relay = await serve(['--workers', '2', '--worker-balance', 'least-connections', '--state-dir', stateDir, '--shutdown-grace-seconds', '2',
    '--readiness-drain-seconds', '0', '--cache-snapshot-dir', snapshotDir, '--cache-snapshot-interval-seconds', '0.2']);
  t.teardown(() => relay.child.kill('SIGKILL'));

  const vms = await Promise.all(['a', 'b', 'c', 'd'].map((name) => configuredVm(relay.xds, name)));
  t.true(vms[0]!.config.cds.length > 0 && vms[0]!.config.eds.length === 1);
  for (const { config } of vms) t.deepEqual(config, vms[0]!.config, 'every VM, whichever worker serves it, has the same config');

  const syncz = await json(`${relay.admin}/debug/syncz`);
  t.is(syncz.length, 4);
  t.deepEqual([...new Set(syncz.map((entry: any) => entry.worker))].sort(), [0, 1], 'the VMs are on both workers and /debug/syncz lists them all');
  const groups = await json(`${relay.admin}/debug/groups`);
  t.deepEqual([...new Set(groups.map((group: any) => group.worker))].sort(), [0, 1], 'each worker has its own group');
  const dump = await fetch(`${relay.admin}/debug/config_dump?proxy=${encodeURIComponent(syncz.find((e: any) => e.worker === 1).proxy)}`);
  t.is(dump.status, 200, 'config_dump finds a VM of the second worker');
  const metrics = await (await fetch(`${relay.admin}/metrics`)).text();
  t.regex(metrics, /^meshrelay_xds_connected_proxies 4$/m, 'gauges are summed over workers');
  t.regex(metrics, /^meshrelay_upstream_streams 2$/m, 'one upstream stream per group per worker');
  t.regex(metrics, /^meshrelay_workers\{state="ready"\} 2$/m);
  const page = await (await fetch(`${relay.admin}/`)).text();
  t.regex(page, /Workers \(2\)/);
  t.regex(page, /VMs \(4\)/);
  const ready = await json(`${relay.admin}/readyz`);
  t.true(ready.ready);
  const workerPids: number[] = ready.workers.map((worker: any) => worker.pid);
  t.is(workerPids.length, 2);

  // Both workers write their snapshot; wait for each to hold the group.
  const deadline = Date.now() + 10_000;
  while (!(existsSync(path.join(snapshotDir, 'worker-0', 'upstream-cache.json')) && existsSync(path.join(snapshotDir, 'worker-1', 'upstream-cache.json'))) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  t.true(existsSync(path.join(snapshotDir, 'worker-1', 'upstream-cache.json')));

  relay.child.kill('SIGTERM');
  const statuses = await Promise.all(vms.map(({ vm }) => vm.status));
  t.true(statuses.every((s) => s.code === grpc.status.UNAVAILABLE), 'every VM on every worker is told to reconnect elsewhere');
  t.is(await relay.exit, 0);
  // An exited worker may show for a moment as a zombie until it is reaped.
  const gone = Date.now() + 3000;
  while (workerPids.some(pidAlive) && Date.now() < gone) await new Promise((resolve) => setTimeout(resolve, 50));
  t.false(workerPids.some(pidAlive), 'no worker outlives the coordinator');

  // Restart with istiod unreachable: a VM on either worker is served the snapshot's config.
  const restarted = await serve(['--workers', '2', '--worker-balance', 'least-connections', '--state-dir', stateDir, '--upstream', '127.0.0.1:1',
    '--address-independent-config', 'true', '--cache-snapshot-dir', snapshotDir, '--readiness-drain-seconds', '0']);
  t.teardown(() => restarted.child.kill('SIGKILL'));
  const again = await Promise.all(['a', 'b'].map((name) => configuredVm(restarted.xds, name)));
  for (const { config, vm } of again) {
    t.deepEqual(config, vms[0]!.config, 'served from the snapshot, unchanged');
    t.teardown(() => vm.close());
  }
  const readiness = await json(`${restarted.admin}/readyz`);
  t.true(readiness.ready && readiness.degraded, 'ready, degraded: serving the snapshot');
  t.deepEqual([...new Set((await json(`${restarted.admin}/debug/syncz`)).map((entry: any) => entry.worker))].sort(), [0, 1]);
});

test('--workers 2: a worker that dies is started again; its VMs reconnect to the other worker meanwhile', async (t) => {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'meshrelay-workers-'));
  const relay = await serve(['--workers', '2', '--worker-balance', 'least-connections', '--state-dir', stateDir]);
  t.teardown(() => relay.child.kill('SIGKILL'));
  const before = (await json(`${relay.admin}/readyz`)).workers;
  process.kill(before[1].pid, 'SIGKILL');
  const { vm } = await configuredVm(relay.xds, 'during');
  vm.close();
  let after = before;
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    after = (await json(`${relay.admin}/readyz`)).workers;
    if (after[1].state === 'ready' && after[1].pid !== before[1].pid) break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  t.is(after[1].state, 'ready');
  t.not(after[1].pid, before[1].pid);
  t.is(after[1].restarts, 1);
  t.regex(await (await fetch(`${relay.admin}/metrics`)).text(), /^meshrelay_worker_restarts 1$/m);
});

test('--workers 2: istioctl proxy-status over ADS lists the VMs of every worker, whichever worker its stream lands on', async (t) => {
  const pki = makeTestPki();
  const stateDir = mkdtempSync(path.join(tmpdir(), 'meshrelay-workers-'));
  const relay = await serve(['--workers', '2', '--worker-balance', 'least-connections', '--state-dir', stateDir,
    '--tls-listen', '127.0.0.1:0', '--tls-cert-file', pki.serverCert, '--tls-key-file', pki.serverKey, '--tls-client-ca-file', pki.caCert]);
  t.teardown(() => relay.child.kill('SIGKILL'));
  const vms = await Promise.all(['a', 'b', 'c', 'd'].map((name) => configuredVm(relay.xds, name)));
  t.teardown(() => { for (const { vm } of vms) vm.close(); });
  t.deepEqual([...new Set((await json(`${relay.admin}/debug/syncz`)).map((entry: any) => entry.worker))].sort(), [0, 1]);

  // Two istioctl-like streams (each its own connection): least-connections puts them on different workers.
  const ids = [];
  for (let attempt = 0; attempt < 2; attempt++) {
    const credentials = grpc.credentials.createSsl(pki.read(pki.caCert), pki.read(pki.clientKey), pki.read(pki.clientCert));
    const debug = new AdsTestClient(relay.tls!, 'sotw', new grpc.Client(relay.tls!, credentials, { 'grpc.ssl_target_name_override': 'istiod.istio-system.svc' }), {}, true);
    t.teardown(() => debug.close());
    debug.send({ node: { id: 'istioctl~debug', metadata: null }, type_url: DebugTypeUrl.syncz } as any);
    const response: any = await debug.next(10_000);
    const clientConfig = messageType('envoy.service.status.v3.ClientConfig');
    const listed = response.resources.map((resource: any) => (clientConfig.toObject(clientConfig.decode(resource.value)) as { node: { id: string } }).node.id).sort();
    t.deepEqual(listed, ['a', 'b', 'c', 'd'].map((name) => vmNode({ name: `vm-${name}` }).id).sort(), 'every VM of the caller\'s namespace, from both workers');
    ids.push(JSON.parse(response.control_plane.identifier).ID);
  }
  t.is(new Set(ids).size, 2, `the two answers came from two workers (${ids.join(', ')})`);
});

test('--workers 2 --worker-balance kernel: the workers accept on one shared socket; VMs get identical config and every view lists them; SIGTERM drains', async (t) => {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'meshrelay-workers-'));
  const relay = await serve(['--workers', '2', '--worker-balance', 'kernel', '--state-dir', stateDir, '--shutdown-grace-seconds', '2']);
  t.teardown(() => relay.child.kill('SIGKILL'));
  const vms = await Promise.all(['a', 'b', 'c', 'd', 'e', 'f'].map((name) => configuredVm(relay.xds, name)));
  for (const { config } of vms) t.deepEqual(config, vms[0]!.config);
  const syncz = await json(`${relay.admin}/debug/syncz`);
  t.is(syncz.length, 6, 'the VMs of both workers are listed, wherever the kernel put them');
  t.regex(await (await fetch(`${relay.admin}/metrics`)).text(), /^meshrelay_xds_connected_proxies 6$/m);
  relay.child.kill('SIGTERM');
  t.true((await Promise.all(vms.map(({ vm }) => vm.status))).every((s) => s.code === grpc.status.UNAVAILABLE));
  t.is(await relay.exit, 0);
});
