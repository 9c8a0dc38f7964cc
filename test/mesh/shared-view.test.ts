import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { parseMesh } from '../../src/sim/mesh-model.js';
import { messageType } from '../../src/xds/protocol/protos.js';
import { structToJson } from '../../src/xds/protocol/struct.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { AdsTestClient, vmNode } from '../helpers/ads-client.js';
import { eventually, startRelay, startSim } from '../helpers/harness.js';

const httpbin = 'outbound|8000||httpbin.bar.svc.cluster.local';

const mesh = () => parseMesh(`
networks:
  net1: { clusterId: cluster1, gateways: [{ address: 192.0.2.10, port: 15443 }] }
  vm-net: { clusterId: vm-cluster }
services:
  - name: httpbin
    namespace: bar
    ports: [{ port: 8000 }]
    endpoints:
      - { address: 10.10.1.11, port: 80, network: net1, locality: r/z1, serviceAccount: httpbin }
      - { address: 10.10.1.12, port: 80, network: net1, locality: r/z2, weight: 3, serviceAccount: httpbin }
      - { address: 172.16.0.9, port: 80, network: vm-net, locality: r/z1, serviceAccount: httpbin }
`, 'shared-view mesh');

function meshNetworksFile(): string {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'mesh-networks-')), 'meshNetworks.yaml');
  writeFileSync(file, 'networks:\n  net1:\n    endpoints: [{ fromRegistry: cluster1 }]\n  vm-net:\n    endpoints: [{ fromRegistry: vm-cluster }]\n');
  return file;
}

type Decoded = Record<string, any>;
function decodeCla(bytes: Uint8Array): Decoded {
  const type = messageType('envoy.config.endpoint.v3.ClusterLoadAssignment');
  return type.toObject(type.decode(bytes), { longs: Number, defaults: false }) as Decoded;
}

async function edsFor(target: string, network: string, name: string) {
  const vm = new AdsTestClient(target, 'delta', new grpc.Client(target, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }), {}, true);
  vm.send({ node: vmNode({ name, network }), type_url: TypeUrl.endpoint, resource_names_subscribe: [httpbin] });
  const response = await vm.next();
  return { vm, cla: decodeCla(response.resources[0]!.resource!.value) };
}

test('one upstream view on net1 serves VMs on every network; the relay\'s translation equals istiod-style rendering per network', async (t) => {
  const sim = await startSim(mesh());
  const relay = await startRelay({
    upstream: sim.target, sharedUpstreamView: true, network: 'net1',
    gateways: ['net1=192.0.2.10:15443'], meshNetworksFile: meshNetworksFile(),
  });
  const clients: Array<{ close(): void }> = [];
  t.teardown(async () => {
    for (const client of clients) client.close();
    await relay.stop();
    await sim.close();
  });
  const vmNet = await edsFor(relay.target, 'vm-net', 'vm-a');
  const net1 = await edsFor(relay.target, 'net1', 'pod-a');
  clients.push(vmNet.vm, net1.vm);
  t.is(sim.ads.connectedProxies, 1, 'one upstream stream for both networks');
  t.is(sim.ads.syncStatus()[0]!.key, 'envoy/net1', 'the upstream node declares the relay\'s own network');

  // What the simulated istiod renders for each network directly, from its own topology.
  const direct = async (network: string) => {
    const client = new AdsTestClient(sim.target, 'delta');
    clients.push(client);
    client.send({ node: vmNode({ name: `direct-${network}`, network }), type_url: TypeUrl.endpoint, resource_names_subscribe: [httpbin] });
    return decodeCla((await client.next()).resources[0]!.resource!.value);
  };
  t.deepEqual(vmNet.cla, await direct('vm-net'), 'vm-net: the relay translated net1\'s view exactly as the control plane would');
  t.deepEqual(net1.cla, await direct('net1'), 'net1: pod addresses, passed through');

  const gatewayEndpoints = vmNet.cla.endpoints.flatMap((locality: Decoded) => locality.lb_endpoints)
    .filter((ep: Decoded) => ep.endpoint.address.socket_address.port_value === 15443);
  t.is(gatewayEndpoints.length, 2, 'one gateway endpoint in each net1 locality');
  for (const ep of gatewayEndpoints) {
    t.is(ep.endpoint.address.socket_address.address, '192.0.2.10');
    t.deepEqual(structToJson(ep.metadata.filter_metadata['envoy.transport_socket_match']), { tlsMode: 'istio' });
    t.deepEqual(structToJson(ep.metadata.filter_metadata.istio), { workload: ';;;;' });
  }
});

test('N VMs on M networks cost M translations per EDS version, not N', async (t) => {
  const sim = await startSim(mesh());
  const relay = await startRelay({
    upstream: sim.target, sharedUpstreamView: true, network: 'net1',
    gateways: ['net1=192.0.2.10:15443'], meshNetworksFile: meshNetworksFile(),
  });
  const vms: Array<AdsTestClient<'delta'>> = [];
  t.teardown(async () => {
    for (const vm of vms) vm.close();
    connection.close();
    await relay.stop();
    await sim.close();
  });
  const connection = new grpc.Client(relay.target, grpc.credentials.createInsecure());
  for (let i = 0; i < 30; i++) {
    const vm = new AdsTestClient(relay.target, 'delta', connection);
    vm.send({ node: vmNode({ name: `vm-${i}`, network: ['vm-net', 'net1', 'edge'][i % 3]! }), type_url: TypeUrl.endpoint, resource_names_subscribe: [httpbin] });
    vms.push(vm);
  }
  await Promise.all(vms.map((vm) => vm.next()));
  const translations = async () => ((await (await fetch(`${relay.adminUrl}/debug/groups`)).json()) as Array<{ edsTranslationsByNetwork: Record<string, number> }>)[0]!.edsTranslationsByNetwork;
  t.deepEqual(await translations(), { 'vm-net': 1, net1: 1, edge: 1 });
  sim.sim.setEndpoints('httpbin', 'bar', mesh().services[0]!.endpoints.slice(1));
  await Promise.all(vms.map((vm) => vm.next()));
  t.deepEqual(await translations(), { 'vm-net': 2, net1: 2, edge: 2 }, 'one more per network for the new version');
  const metrics = await (await fetch(`${relay.adminUrl}/metrics`)).text();
  t.regex(metrics, /meshrelay_eds_translations\{network="vm-net"\} 2/);
  t.regex(metrics, /meshrelay_upstream_streams 1/);
  t.regex(metrics, /meshrelay_xds_connected_proxies 30/);
});

test('a changed meshNetworks file re-translates for every network; a broken one is ignored', async (t) => {
  const sim = await startSim(mesh());
  const file = meshNetworksFile();
  const relay = await startRelay({ upstream: sim.target, sharedUpstreamView: true, network: 'net1', meshNetworksFile: file });
  t.teardown(async () => {
    await relay.stop();
    await sim.close();
  });
  const { vm, cla } = await edsFor(relay.target, 'vm-net', 'vm-a');
  t.teardown(() => vm.close());
  const addresses = (c: Decoded) => c.endpoints.flatMap((l: Decoded) => l.lb_endpoints.map((ep: Decoded) => ep.endpoint.address.socket_address.address)).sort();
  t.deepEqual(addresses(cla), ['10.10.1.11', '10.10.1.12', '172.16.0.9'], 'no gateway known yet: multi-network is off');
  writeFileSync(file, 'networks:\n  net1:\n    endpoints: [{ fromRegistry: cluster1 }]\n    gateways: [{ address: 198.51.100.7, port: 15443 }]\n  vm-net:\n    endpoints: [{ fromRegistry: vm-cluster }]\n');
  const updated = decodeCla((await vm.next(5000)).resources[0]!.resource!.value);
  t.deepEqual(addresses(updated), ['172.16.0.9', '198.51.100.7', '198.51.100.7']);
  writeFileSync(file, 'networks: [broken');
  t.true(await vm.quietFor(600), 'a broken file changes nothing');
  const networks = await eventually(async () => (await (await fetch(`${relay.adminUrl}/debug/networks`)).json()) as Decoded, (body) => body.networks?.net1 !== undefined);
  t.deepEqual(networks.networks.net1.gateways.map((g: Decoded) => g.address), ['198.51.100.7']);
  t.deepEqual(networks.networks['vm-net'].registries, ['vm-cluster']);
});

test('the embedded istiod\'s default mesh through one upstream view: a vm-net VM gets the gateway on 15443, a net1 proxy gets pod addresses', async (t) => {
  const sim = await startSim();
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'mesh-networks-')), 'meshNetworks.yaml');
  // VMs are registered in the same cluster as the pods, so their subnet says which network they are on.
  writeFileSync(file, 'networks:\n  net1:\n    endpoints: [{ fromRegistry: cluster1 }]\n  vm-net:\n    endpoints: [{ fromCidr: 172.16.0.0/16 }]\n');
  const relay = await startRelay({ upstream: sim.target, sharedUpstreamView: true, network: 'net1', gateways: ['net1=192.0.2.10:15443'], meshNetworksFile: file });
  const vmNet = await edsFor(relay.target, 'vm-net', 'vm-a');
  const net1 = await edsFor(relay.target, 'net1', 'pod-a');
  t.teardown(async () => {
    vmNet.vm.close();
    net1.vm.close();
    await relay.stop();
    await sim.close();
  });
  t.is(sim.ads.connectedProxies, 1);
  const endpoints = (cla: Decoded) => cla.endpoints.flatMap((l: Decoded) => l.lb_endpoints);
  for (const ep of endpoints(vmNet.cla)) {
    t.deepEqual(ep.endpoint.address.socket_address, { address: '192.0.2.10', port_value: 15443 });
    t.deepEqual(structToJson(ep.metadata.filter_metadata['envoy.transport_socket_match']), { tlsMode: 'istio' });
  }
  t.deepEqual(endpoints(net1.cla).map((ep: Decoded) => ep.endpoint.address.socket_address.address).sort(), ['10.10.1.11', '10.10.1.12']);
});
