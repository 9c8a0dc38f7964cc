import test from 'ava';
import { UPSTREAM_TLS_TYPE, istioTlsMatch, packAny } from '../../src/mesh/istio-tls.js';
import { repairClusterSni } from '../../src/mesh/sni-repair.js';
import { messageType } from '../../src/xds/protocol/protos.js';
import { structToJson } from '../../src/xds/protocol/struct.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { AdsTestClient, vmNode } from '../helpers/ads-client.js';
import { startRelay } from '../helpers/harness.js';
import { startStaticUpstream } from '../helpers/static-upstream.js';

type Decoded = Record<string, any>;
const clusterType = () => messageType('envoy.config.cluster.v3.Cluster');
const encodeCluster = (object: Decoded) => Buffer.from(clusterType().encode(clusterType().fromObject(object)).finish());
const decodeCluster = (bytes: Uint8Array) => clusterType().toObject(clusterType().decode(bytes), { longs: Number, enums: String, defaults: false }) as Decoded;
const decodeTls = (bytes: Uint8Array) => messageType(UPSTREAM_TLS_TYPE).toObject(messageType(UPSTREAM_TLS_TYPE).decode(bytes), { defaults: false }) as Decoded;

const name = 'outbound|8000|v1|httpbin.bar.svc.cluster.local';
const sni = 'outbound_.8000_.v1_.httpbin.bar.svc.cluster.local';

test('a mesh cluster without transport socket matches gets tlsMode-istio (SNI, ALPN) and a plaintext fallback', (t) => {
  const repaired = decodeCluster(repairClusterSni(encodeCluster({ name, type: 'EDS', eds_cluster_config: { eds_config: { ads: {} }, service_name: name } })));
  const [istio, plaintext] = repaired.transport_socket_matches;
  t.is(istio.name, 'tlsMode-istio');
  t.deepEqual(structToJson(istio.match), { tlsMode: 'istio' });
  const tls = decodeTls(istio.transport_socket.typed_config.value);
  t.is(tls.sni, sni, 'subset v1 goes into the SNI');
  t.deepEqual(tls.common_tls_context.alpn_protocols, ['istio-peer-exchange', 'istio']);
  t.is(plaintext.name, 'tlsMode-disabled');
  t.is(repaired.eds_cluster_config.service_name, name, 'the rest of the cluster is kept');
});

test('a wrong SNI or missing ALPN is fixed; other TLS settings are kept', (t) => {
  const tls = { sni: 'wrong', common_tls_context: { alpn_protocols: ['h2'], tls_params: { tls_minimum_protocol_version: 'TLSv1_2' } } };
  const body = encodeCluster({ name, transport_socket_matches: [{ ...istioTlsMatch(sni), transport_socket: { name: 'tls', typed_config: packAny(UPSTREAM_TLS_TYPE, tls) } }] });
  const repaired = decodeTls(decodeCluster(repairClusterSni(body)).transport_socket_matches[0].transport_socket.typed_config.value);
  t.is(repaired.sni, sni);
  t.deepEqual(repaired.common_tls_context.alpn_protocols, ['istio-peer-exchange', 'istio', 'h2']);
  t.truthy(repaired.common_tls_context.tls_params);
});

test('correct clusters and non-mesh clusters stay byte-identical', (t) => {
  const correct = encodeCluster({ name, transport_socket_matches: [istioTlsMatch(sni)] });
  t.is(repairClusterSni(correct), correct);
  const other = encodeCluster({ name: 'PassthroughCluster', type: 'ORIGINAL_DST' });
  t.is(repairClusterSni(other), other);
});

test('with --repair-sni the relay serves repaired clusters from an upstream that left SNI out', async (t) => {
  const upstream = await startStaticUpstream();
  const relay = await startRelay({ upstream: upstream.target, repairSni: true });
  const vm = new AdsTestClient(relay.target, 'delta');
  t.teardown(async () => {
    vm.close();
    await relay.stop();
    await upstream.close();
  });
  const bare = encodeCluster({ name, type: 'EDS', eds_cluster_config: { eds_config: { ads: {} } } });
  upstream.cache.apply(TypeUrl.cluster, [{ name, body: bare }], [], { replaceAll: true });
  vm.send({ node: vmNode(), type_url: TypeUrl.cluster });
  const response = await vm.next();
  const cluster = decodeCluster(response.resources[0]!.resource!.value);
  t.is(decodeTls(cluster.transport_socket_matches[0].transport_socket.typed_config.value).sni, sni);
});
