import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { loadCaBundle } from '../../src/ca/ca-bundle.js';
import { createDevCa } from '../../src/ca/dev-ca.js';
import { Oid, derToPem, issueCertificate } from '../../src/ca/x509.js';
import { UPSTREAM_TLS_TYPE } from '../../src/mesh/istio-tls.js';
import { parseMesh } from '../../src/sim/mesh-model.js';
import { messageType } from '../../src/xds/protocol/protos.js';
import { structToJson } from '../../src/xds/protocol/struct.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { AdsTestClient, vmNode } from '../helpers/ads-client.js';
import { startRelay, startSim } from '../helpers/harness.js';
import { startSniGateway } from '../helpers/sni-gateway.js';

type Decoded = Record<string, any>;
const decode = (typeName: string, bytes: Uint8Array) => messageType(typeName).toObject(messageType(typeName).decode(bytes), { longs: Number, defaults: false }) as Decoded;

/** A workload certificate from the project's dev CA, as istio-agent would hold one. */
function workloadCertificate(caDir: string, spiffe: string) {
  const bundle = loadCaBundle(caDir);
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const now = Date.now();
  const leaf = issueCertificate({
    subject: [], spki: publicKey.export({ type: 'spki', format: 'der' }), notBefore: new Date(now - 60_000), notAfter: new Date(now + 3600_000),
    isCa: false, keyUsage: ['digitalSignature', 'keyEncipherment'], extendedKeyUsage: [Oid.serverAuth, Oid.clientAuth], uris: [spiffe],
  }, bundle.issuer);
  return { key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), cert: [derToPem(leaf), ...bundle.chainPems].join(''), ca: bundle.rootPem };
}

test('data path: a VM following the relay\'s CDS (SNI, tlsMode match) and EDS reaches a cluster-network backend through an SNI-routing gateway with mTLS', async (t) => {
  const caDir = path.join(mkdtempSync(path.join(tmpdir(), 'datapath-ca-')), 'ca');
  createDevCa(caDir);
  const server = workloadCertificate(caDir, 'spiffe://cluster.local/ns/bar/sa/httpbin');
  const client = workloadCertificate(caDir, 'spiffe://cluster.local/ns/vm/sa/vm-sa');

  // The backend pod: Istio mTLS (client certificate required, ALPN istio).
  const backend = tls.createServer({ ...server, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['istio'] }, (socket) => {
    socket.write(`hello from httpbin to ${socket.getPeerCertificate().subjectaltname}\n`);
  });
  await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
  const gateway = await startSniGateway('127.0.0.2', new Map([['outbound_.8000_._.httpbin.bar.svc.cluster.local', (backend.address() as AddressInfo).port]]));

  // The cluster network: httpbin's pod address is not reachable from the VM; only the gateway is.
  const sim = await startSim(parseMesh(`
networks:
  net1: { clusterId: cluster1 }
  vm-net: { clusterId: vm-cluster }
services:
  - name: httpbin
    namespace: bar
    ports: [{ port: 8000 }]
    endpoints: [{ address: 10.255.0.1, port: 80, network: net1, serviceAccount: httpbin }]
`, 'data-path mesh'));
  const meshNetworks = path.join(mkdtempSync(path.join(tmpdir(), 'datapath-net-')), 'meshNetworks.yaml');
  writeFileSync(meshNetworks, 'networks:\n  net1:\n    endpoints: [{ fromRegistry: cluster1 }]\n  vm-net:\n    endpoints: [{ fromRegistry: vm-cluster }]\n');
  const relay = await startRelay({
    upstream: sim.target, sharedUpstreamView: true, network: 'net1',
    gateways: [`net1/cluster1=127.0.0.2:${gateway.port}`], meshNetworksFile: meshNetworks,
  });
  const vm = new AdsTestClient(relay.target, 'delta');
  t.teardown(async () => {
    vm.close();
    await relay.stop();
    await sim.close();
    await gateway.close();
    await new Promise((resolve) => backend.close(resolve));
  });

  // Follow CDS like Envoy: the cluster's tlsMode-istio match gives SNI and ALPN.
  vm.send({ node: vmNode({ network: 'vm-net' }), type_url: TypeUrl.cluster });
  const cds = await vm.next();
  const cluster = decode('envoy.config.cluster.v3.Cluster', cds.resources.find((r) => r.name === 'outbound|8000||httpbin.bar.svc.cluster.local')!.resource!.value);
  const istioMatch = cluster.transport_socket_matches.find((m: Decoded) => structToJson(m.match).tlsMode === 'istio');
  const upstreamTls = decode(UPSTREAM_TLS_TYPE, istioMatch.transport_socket.typed_config.value);

  // Then EDS: the endpoint the VM gets is the gateway, labelled tlsMode istio, so mTLS is used.
  vm.send({ type_url: TypeUrl.endpoint, resource_names_subscribe: [cluster.name] });
  const eds = await vm.next();
  const [lbEndpoint] = decode('envoy.config.endpoint.v3.ClusterLoadAssignment', eds.resources[0]!.resource!.value).endpoints[0].lb_endpoints;
  t.is(structToJson(lbEndpoint.metadata.filter_metadata['envoy.transport_socket_match']).tlsMode, 'istio');
  const { address, port_value: port } = lbEndpoint.endpoint.address.socket_address;
  t.deepEqual([address, port], ['127.0.0.2', gateway.port]);

  const reply = await new Promise<string>((resolve, reject) => {
    const socket = tls.connect({ host: address, port, servername: upstreamTls.sni, ALPNProtocols: upstreamTls.common_tls_context.alpn_protocols, ...client, checkServerIdentity: () => undefined });
    let text = '';
    socket.on('data', (chunk) => {
      text += chunk;
      if (text.endsWith('\n')) {
        socket.destroy();
        resolve(text.trim());
      }
    });
    socket.on('error', reject);
  });
  t.is(reply, 'hello from httpbin to URI:spiffe://cluster.local/ns/vm/sa/vm-sa');
  t.deepEqual(gateway.seen, ['outbound_.8000_._.httpbin.bar.svc.cluster.local']);
});
