import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { formatAddress } from '../../src/transport/listen-address.js';
import { messageType } from '../../src/xds/protocol/protos.js';
import { structToJson } from '../../src/xds/protocol/struct.js';
import { DebugTypeUrl, TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { AdsTestClient, vmNode } from '../helpers/ads-client.js';
import { startRelay, startSim } from '../helpers/harness.js';
import { makeTestPki } from '../helpers/openssl-certs.js';
import { ConfigProxy } from '../helpers/proxy-config.js';

interface ClientConfig {
  node: { id: string; metadata: Parameters<typeof structToJson>[0] };
  generic_xds_configs: Array<{ type_url: string; config_status: number }>;
}

test('istiod\'s debug type istio.io/debug/syncz: an authenticated caller gets one ClientConfig per VM of its namespace, with each type SYNCED once ACKed; the stream never joins a group; unauthenticated callers are refused', async (t) => {
  const pki = makeTestPki();
  const sim = await startSim();
  const relay = await startRelay({ upstream: sim.target, tlsListen: '127.0.0.1:0', tlsCertFile: pki.serverCert, tlsKeyFile: pki.serverKey, tlsClientCaFile: pki.caCert, instanceId: 'relay-7' });
  t.teardown(async () => {
    await relay.stop();
    await sim.close();
  });
  const ownNamespace = new ConfigProxy(relay.target, 'delta', vmNode({ name: 'vm-a' }));
  const otherNamespace = new ConfigProxy(relay.target, 'sotw', vmNode({ name: 'vm-b', namespace: 'shop', serviceAccount: 'cart' }));
  t.teardown(() => { ownNamespace.close(); otherNamespace.close(); });
  await Promise.all([ownNamespace.settled(500), otherNamespace.settled(500)]);
  const groupsBefore = relay.groups.list().length;

  // The client certificate is spiffe://cluster.local/ns/vm/sa/vm-sa: it sees namespace vm only.
  const target = formatAddress(relay.addresses.tls!);
  const credentials = grpc.credentials.createSsl(pki.read(pki.caCert), pki.read(pki.clientKey), pki.read(pki.clientCert));
  const debug = new AdsTestClient(target, 'sotw', new grpc.Client(target, credentials, { 'grpc.ssl_target_name_override': 'istiod.istio-system.svc' }), {}, true);
  t.teardown(() => debug.close());
  debug.send({ node: { id: 'istioctl~debug', metadata: null }, type_url: DebugTypeUrl.syncz });
  const response = await debug.next();
  t.is(response.type_url, DebugTypeUrl.syncz);
  t.deepEqual(JSON.parse(response.control_plane!.identifier!), { Component: 'meshrelay', ID: 'relay-7', Info: { version: '0.1.0' } });
  const configs = response.resources.map((resource) => messageType('envoy.service.status.v3.ClientConfig').toObject(messageType('envoy.service.status.v3.ClientConfig').decode(resource.value), { enums: Number, defaults: true }) as ClientConfig);
  t.deepEqual(configs.map((config) => config.node.id), [vmNode({ name: 'vm-a' }).id], 'only the VM of the caller\'s namespace');
  t.like(structToJson(configs[0]!.node.metadata), { NAMESPACE: 'vm', CLUSTER_ID: 'cluster1', ISTIO_VERSION: '1.30.3' });
  const statuses = Object.fromEntries(configs[0]!.generic_xds_configs.map((config) => [config.type_url, config.config_status]));
  for (const typeUrl of [TypeUrl.cluster, TypeUrl.listener, TypeUrl.endpoint, TypeUrl.route]) t.is(statuses[typeUrl], 1, `${typeUrl} SYNCED`);
  // The ACK of the debug response is not answered again.
  debug.send({ type_url: DebugTypeUrl.syncz, response_nonce: response.nonce, version_info: response.version_info });
  t.true(await debug.quietFor(300));
  t.is(relay.groups.list().length, groupsBefore, 'the debug stream joined no group');

  const anonymous = new AdsTestClient(relay.target, 'sotw');
  t.teardown(() => anonymous.close());
  anonymous.send({ node: vmNode(), type_url: DebugTypeUrl.syncz });
  t.is((await anonymous.status).code, grpc.status.UNAUTHENTICATED);
});
