import test from 'ava';
import { messageType } from '../../src/xds/protocol/protos.js';
import { structToJson } from '../../src/xds/protocol/struct.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { AdsTestClient, vmNode } from '../helpers/ads-client.js';
import { startRelay, startSim } from '../helpers/harness.js';

const httpbinCluster = 'outbound|8000||httpbin.bar.svc.cluster.local';

type Decoded = Record<string, any>;

function decode(typeName: string, bytes: Uint8Array): Decoded {
  const type = messageType(typeName);
  return type.toObject(type.decode(bytes), { defaults: false, enums: String, longs: Number }) as Decoded;
}

async function fetchThroughRelay(network: string, typeUrl: string, names: string[] = []) {
  const sim = await startSim();
  const relay = await startRelay({ upstream: sim.target });
  const vm = new AdsTestClient(relay.target, 'delta');
  try {
    vm.send({ node: vmNode({ network }), type_url: typeUrl, resource_names_subscribe: names });
    return (await vm.next()).resources;
  } finally {
    vm.close();
    await relay.stop();
    await sim.close();
  }
}

test('CDS: mesh clusters are outbound|PORT||HOST with the tlsMode-istio match carrying Istio SNI and ALPN', async (t) => {
  const resources = await fetchThroughRelay('vm-net', TypeUrl.cluster);
  const names = resources.map((resource) => resource.name).sort();
  t.true(names.includes(httpbinCluster));
  t.true(names.includes('BlackHoleCluster') && names.includes('PassthroughCluster'));
  const cluster = decode('envoy.config.cluster.v3.Cluster', resources.find((r) => r.name === httpbinCluster)!.resource!.value);
  t.is(cluster.type, 'EDS');
  t.is(cluster.eds_cluster_config.service_name, httpbinCluster);
  const [istio, disabled] = cluster.transport_socket_matches;
  t.is(istio.name, 'tlsMode-istio');
  t.deepEqual(structToJson(istio.match), { tlsMode: 'istio' });
  t.is(istio.transport_socket.typed_config.type_url, 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext');
  const tls = decode('envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext', istio.transport_socket.typed_config.value);
  t.is(tls.sni, 'outbound_.8000_._.httpbin.bar.svc.cluster.local');
  t.deepEqual(tls.common_tls_context.alpn_protocols, ['istio-peer-exchange', 'istio']);
  t.is(tls.common_tls_context.combined_validation_context.default_validation_context.match_subject_alt_names[0].exact, 'spiffe://cluster.local/ns/bar/sa/httpbin');
  t.is(disabled.name, 'tlsMode-disabled');
  t.deepEqual(structToJson(disabled.match), {});
});

test('EDS for a VM on vm-net: cluster-network endpoints become the east-west gateway on 15443 with tlsMode istio', async (t) => {
  const [resource] = await fetchThroughRelay('vm-net', TypeUrl.endpoint, [httpbinCluster]);
  const cla = decode('envoy.config.endpoint.v3.ClusterLoadAssignment', resource!.resource!.value);
  const endpoints = cla.endpoints.flatMap((locality: Decoded) => locality.lb_endpoints);
  t.is(endpoints.length, 2, 'one gateway endpoint in each of the two localities');
  for (const endpoint of endpoints) {
    t.deepEqual(endpoint.endpoint.address.socket_address, { address: '192.0.2.10', port_value: 15443 });
    t.deepEqual(structToJson(endpoint.metadata.filter_metadata['envoy.transport_socket_match']), { tlsMode: 'istio' });
    t.deepEqual(structToJson(endpoint.metadata.filter_metadata.istio), { workload: ';;;;' });
  }
});

test('EDS for a proxy on net1: pod addresses', async (t) => {
  const [resource] = await fetchThroughRelay('net1', TypeUrl.endpoint, [httpbinCluster]);
  const cla = decode('envoy.config.endpoint.v3.ClusterLoadAssignment', resource!.resource!.value);
  const addresses = cla.endpoints.flatMap((locality: Decoded) => locality.lb_endpoints.map((e: Decoded) => e.endpoint.address.socket_address.address)).sort();
  t.deepEqual(addresses, ['10.10.1.11', '10.10.1.12']);
});

test('EDS for vm-net drops remote endpoints without mTLS (the gateway could not route them)', async (t) => {
  const legacy = 'outbound|5432||legacy-db.bar.svc.cluster.local';
  const [resource] = await fetchThroughRelay('vm-net', TypeUrl.endpoint, [legacy]);
  const cla = decode('envoy.config.endpoint.v3.ClusterLoadAssignment', resource!.resource!.value);
  t.is(cla.cluster_name, legacy);
  const endpoints = (cla.endpoints ?? []).flatMap((locality: Decoded) => locality.lb_endpoints ?? []);
  t.deepEqual(endpoints, [], 'no endpoint, and no gateway in its place');
});

test('LDS and RDS: one outbound listener and route per port, routing each host to its cluster', async (t) => {
  const listeners = await fetchThroughRelay('vm-net', TypeUrl.listener);
  t.true(listeners.some((l) => l.name === '0.0.0.0_8000'));
  const [route] = await fetchThroughRelay('vm-net', TypeUrl.route, ['8000']);
  const config = decode('envoy.config.route.v3.RouteConfiguration', route!.resource!.value);
  const host = config.virtual_hosts.find((vh: Decoded) => vh.name === 'httpbin.bar.svc.cluster.local:8000');
  t.truthy(host);
  t.is(host.routes[0].route.cluster, httpbinCluster);
});

test('LDS: a TCP port gets a tcp_proxy listener on the service VIP, without RDS', async (t) => {
  const listeners = await fetchThroughRelay('vm-net', TypeUrl.listener);
  t.false(listeners.some((l) => l.name === '0.0.0.0_5432'));
  const tcp = decode('envoy.config.listener.v3.Listener', listeners.find((l) => l.name === '10.96.0.50_5432')!.resource!.value);
  const filter = tcp.filter_chains[0].filters[0];
  t.is(filter.name, 'envoy.filters.network.tcp_proxy');
  t.is(decode('envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', filter.typed_config.value).cluster, 'outbound|5432||legacy-db.bar.svc.cluster.local');
});

test('churn pushes stamped versions, one endpoint change at a time', async (t) => {
  const sim = await startSim();
  t.teardown(() => sim.close());
  const vm = new AdsTestClient(sim.target, 'sotw');
  t.teardown(() => vm.close());
  vm.send({ node: vmNode(), type_url: TypeUrl.endpoint, resource_names: [httpbinCluster] });
  const first = await vm.next();
  vm.send({ type_url: TypeUrl.endpoint, resource_names: [httpbinCluster], version_info: first.version_info, response_nonce: first.nonce });
  sim.sim.startChurn(50);
  const pushed = await vm.next();
  sim.sim.stopChurn();
  const [stamp] = pushed.version_info.split('/');
  t.false(Number.isNaN(Date.parse(stamp!)), `version ${pushed.version_info} carries its push time`);
  t.true(Date.now() - Date.parse(stamp!) < 60_000);
});

test('NDS: a sidecar gets istio-agent\'s name table as istiod builds it: each service with a cluster IP by host, with its short name and namespace', async (t) => {
  const [resource, ...rest] = await fetchThroughRelay('vm-net', TypeUrl.nameTable);
  t.is(rest.length, 0, 'one unnamed resource');
  const { table } = decode('istio.networking.nds.v1.NameTable', resource!.resource!.value);
  t.deepEqual(table['httpbin.bar.svc.cluster.local'], { ips: ['10.96.0.10'], registry: 'Kubernetes', shortname: 'httpbin', namespace: 'bar' });
  t.deepEqual(table['legacy-db.bar.svc.cluster.local'].ips, ['10.96.0.50']);
  t.is(Object.keys(table).length, 5);
});
