import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { createCertificate, opensslCsr } from '../helpers/ca-client.js';
import { caRig } from '../helpers/ca-rig.js';
import { eventually, startRelay, startSim } from '../helpers/harness.js';
import { kubeApiServerUnavailable, startKubeApiServer, type KubeApiServer } from '../helpers/kube-apiserver.js';

const unavailable = kubeApiServerUnavailable();
const realTest = unavailable ? test.skip : test.serial;
if (unavailable) console.warn(`skipping the real kube-apiserver tests: ${unavailable}`);

let api: KubeApiServer | undefined;
test.before(async () => {
  if (!unavailable) api = await startKubeApiServer();
});
test.after.always(async () => {
  await api?.close();
});

realTest('TokenReview against a real kube-apiserver: a projected token for istio-ca gets a certificate for its service account; other tokens do not', async (t) => {
  await api!.request('POST', '/api/v1/namespaces', { metadata: { name: 'vm' } });
  await api!.request('POST', '/api/v1/namespaces/vm/serviceaccounts', { metadata: { name: 'vm-sa' } });
  const r = await caRig('ec-p256', { tokenReview: true, kubeconfig: api!.kubeconfig });
  t.teardown(r.close);
  const token = await api!.token('vm', 'vm-sa', ['istio-ca']);
  const chain = await createCertificate(r.client, opensslCsr('rsa-2048').csr, { authorization: `Bearer ${token}` });
  t.is(new X509Certificate(chain[0]!).subjectAltName, 'URI:spiffe://cluster.local/ns/vm/sa/vm-sa');
  const wrongAudience = await api!.token('vm', 'vm-sa', ['https://kubernetes.default.svc.cluster.local']);
  for (const bad of [wrongAudience, 'not-a-token']) {
    const error = await createCertificate(r.client, opensslCsr('ec-p256').csr, { authorization: `Bearer ${bad}` }).then(() => undefined, (e: grpc.ServiceError) => e);
    t.is(error?.code, grpc.status.UNAUTHENTICATED);
  }
});

realTest('topology from a real kube-apiserver: meshNetworks ConfigMap and gateway Services, surviving an API server restart', async (t) => {
  await api!.request('POST', '/api/v1/namespaces', { metadata: { name: 'istio-system' } });
  await api!.request('POST', '/api/v1/namespaces/istio-system/configmaps', {
    metadata: { name: 'istio' },
    data: { meshNetworks: 'networks:\n  net1:\n    endpoints: [{ fromRegistry: cluster1 }]\n  vm-net:\n    endpoints: [{ fromCidr: 172.16.0.0/16 }]\n' },
  });
  await api!.request('POST', '/api/v1/namespaces/istio-system/services', {
    metadata: { name: 'istio-eastwestgateway', labels: { 'topology.istio.io/network': 'net1' } },
    spec: { type: 'ClusterIP', ports: [{ name: 'tls', port: 15443 }], externalIPs: ['198.51.100.30'] },
  });
  const sim = await startSim();
  const relay = await startRelay({ upstream: sim.target, kubernetesTopology: true, kubeconfig: api!.kubeconfig, clusterId: 'cluster1' });
  t.teardown(async () => {
    await relay.stop();
    await sim.close();
  });
  const networks = async () => ((await (await fetch(`${relay.adminUrl}/debug/networks`)).json()) as { networks: Record<string, any> }).networks;
  const first = await eventually(networks, (n) => n.net1?.gateways?.length === 1, 15_000);
  t.deepEqual(first.net1.gateways.map((g: any) => [g.address, g.port, g.clusterId]), [['198.51.100.30', 15443, 'cluster1']]);
  t.deepEqual(first['vm-net'].cidrs, ['172.16.0.0/16']);

  // The API server goes away mid-watch and comes back (same etcd data): the watches resume.
  await api!.restart();
  const service = await api!.request('GET', '/api/v1/namespaces/istio-system/services/istio-eastwestgateway');
  service.spec.externalIPs = ['198.51.100.31'];
  await api!.request('PUT', '/api/v1/namespaces/istio-system/services/istio-eastwestgateway', service);
  const after = await eventually(networks, (n) => n.net1?.gateways?.[0]?.address === '198.51.100.31', 30_000);
  t.is(after.net1.gateways.length, 1);
});
