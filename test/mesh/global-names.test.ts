import test from 'ava';
import { GlobalNames } from '../../src/mesh/global-names.js';
import { UPSTREAM_TLS_TYPE, istioTlsMatch } from '../../src/mesh/istio-tls.js';
import { messageType } from '../../src/xds/protocol/protos.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { AdsTestClient, vmNode } from '../helpers/ads-client.js';
import { startRelay } from '../helpers/harness.js';
import { startStaticUpstream } from '../helpers/static-upstream.js';

type Decoded = Record<string, any>;
const encode = (typeName: string, object: Decoded) => Buffer.from(messageType(typeName).encode(messageType(typeName).fromObject(object)).finish());
const decode = (typeName: string, bytes: Uint8Array) => messageType(typeName).toObject(messageType(typeName).decode(bytes), { defaults: false }) as Decoded;
const CLUSTER = 'envoy.config.cluster.v3.Cluster';
const ROUTES = 'envoy.config.route.v3.RouteConfiguration';

const names = new GlobalNames('cluster.local');

test('host names map between .global and .svc.<domain>', (t) => {
  t.is(names.toSvc('httpbin.bar.global'), 'httpbin.bar.svc.cluster.local');
  t.is(names.toSvc('httpbin.bar.svc.cluster.local'), 'httpbin.bar.svc.cluster.local');
  t.is(names.toGlobal('httpbin.bar.svc.cluster.local'), 'httpbin.bar.global');
  t.is(names.toGlobal('example.com'), undefined);
});

test('a .global cluster keeps its name but gets the SNI a modern gateway routes', (t) => {
  const name = 'outbound|8000||httpbin.bar.global';
  const legacy = encode(CLUSTER, { name, transport_socket_matches: [istioTlsMatch('outbound_.8000_._.httpbin.bar.global')] });
  const cluster = decode(CLUSTER, names.cluster(legacy));
  t.is(cluster.name, name);
  t.is(decode(UPSTREAM_TLS_TYPE, cluster.transport_socket_matches[0].transport_socket.typed_config.value).sni, 'outbound_.8000_._.httpbin.bar.svc.cluster.local');
  const modern = encode(CLUSTER, { name: 'outbound|8000||httpbin.bar.svc.cluster.local', transport_socket_matches: [istioTlsMatch('outbound_.8000_._.httpbin.bar.svc.cluster.local')] });
  t.is(names.cluster(modern), modern, 'modern clusters stay byte-identical');
});

test('virtual hosts of .svc hosts also answer to the .global names, ports kept', (t) => {
  const body = encode(ROUTES, { name: '8000', virtual_hosts: [{ name: 'httpbin', domains: ['httpbin.bar.svc.cluster.local', 'httpbin.bar.svc.cluster.local:8000', 'httpbin.bar'], routes: [] }] });
  const config = decode(ROUTES, names.routes(body));
  t.deepEqual(config.virtual_hosts[0].domains, ['httpbin.bar.svc.cluster.local', 'httpbin.bar.svc.cluster.local:8000', 'httpbin.bar', 'httpbin.bar.global', 'httpbin.bar.global:8000']);
  const plain = encode(ROUTES, { name: 'x', virtual_hosts: [{ name: 'ext', domains: ['example.com'] }] });
  t.is(names.routes(plain), plain);
});

test('with --legacy-global-names the relay serves bridged clusters and routes to its VMs', async (t) => {
  const upstream = await startStaticUpstream();
  const relay = await startRelay({ upstream: upstream.target, legacyGlobalNames: true });
  const vm = new AdsTestClient(relay.target, 'delta');
  t.teardown(async () => {
    vm.close();
    await relay.stop();
    await upstream.close();
  });
  upstream.cache.apply(TypeUrl.cluster, [{ name: 'outbound|8000||httpbin.bar.global', body: encode(CLUSTER, { name: 'outbound|8000||httpbin.bar.global' }) }], [], { replaceAll: true });
  upstream.cache.apply(TypeUrl.route, [{ name: '8000', body: encode(ROUTES, { name: '8000', virtual_hosts: [{ name: 'h', domains: ['httpbin.bar.svc.cluster.local'] }] }) }], [], { replaceAll: true });
  vm.send({ node: vmNode(), type_url: TypeUrl.cluster });
  const cluster = decode(CLUSTER, (await vm.next()).resources[0]!.resource!.value);
  t.is(decode(UPSTREAM_TLS_TYPE, cluster.transport_socket_matches[0].transport_socket.typed_config.value).sni, 'outbound_.8000_._.httpbin.bar.svc.cluster.local');
  vm.send({ type_url: TypeUrl.route, resource_names_subscribe: ['8000'] });
  const routes = decode(ROUTES, (await vm.next()).resources[0]!.resource!.value);
  t.deepEqual(routes.virtual_hosts[0].domains, ['httpbin.bar.svc.cluster.local', 'httpbin.bar.global']);
});
