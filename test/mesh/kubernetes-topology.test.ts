import test from 'ava';
import { startFakeKubeApi } from '../helpers/fake-kube-api.js';
import { eventually, startRelay, startSim } from '../helpers/harness.js';

const configMaps = '/api/v1/namespaces/istio-system/configmaps';
const services = '/api/v1/services';

test('topology from Kubernetes: meshNetworks in the istio ConfigMap and labelled gateway Services, through the relay\'s watches', async (t) => {
  const api = await startFakeKubeApi();
  api.put(configMaps, {
    metadata: { name: 'istio', namespace: 'istio-system' },
    data: { meshNetworks: 'networks:\n  net1:\n    endpoints: [{ fromRegistry: cluster1 }]\n    gateways: [{ registryServiceName: istio-eastwestgateway.istio-system.svc.cluster.local, port: 15443 }]\n  vm-net:\n    endpoints: [{ fromCidr: 172.16.0.0/16 }]\n' },
  });
  api.put(services, {
    metadata: { name: 'istio-eastwestgateway', namespace: 'istio-system' },
    spec: { ports: [{ port: 15443 }] },
    status: { loadBalancer: { ingress: [{ ip: '198.51.100.20' }] } },
  });
  api.put(services, {
    metadata: { name: 'edge-gateway', namespace: 'istio-system', labels: { 'topology.istio.io/network': 'edge', 'networking.istio.io/gatewayPort': '16443' } },
    spec: { ports: [{ port: 16443 }, { port: 15443 }], externalIPs: ['203.0.113.44'] },
  });
  const sim = await startSim();
  const relay = await startRelay({ upstream: sim.target, kubernetesTopology: true, kubeconfig: api.kubeconfig, clusterId: 'cluster1' });
  t.teardown(async () => {
    await relay.stop();
    await sim.close();
    await api.close();
  });
  const networks = async () => ((await (await fetch(`${relay.adminUrl}/debug/networks`)).json()) as { networks: Record<string, any> }).networks;
  const first = await eventually(networks, (n) => n.net1?.gateways?.length === 1 && n.edge?.gateways?.length === 1, 5000);
  t.deepEqual(first.net1.registries, ['cluster1']);
  t.deepEqual(first.net1.gateways.map((g: any) => [g.address, g.port, g.clusterId]), [['198.51.100.20', 15443, 'cluster1']], 'registryServiceName resolved to the Service\'s load balancer IP');
  t.deepEqual(first.edge.gateways.map((g: any) => [g.address, g.port]), [['203.0.113.44', 16443]], 'gatewayPort label picks the port');
  t.deepEqual(first['vm-net'].cidrs, ['172.16.0.0/16']);

  // A watch cut mid-stream: the informer reconnects and later changes still arrive.
  api.cutWatches();
  await eventually(() => api.watching(services), (n) => n > 0, 10_000);
  api.put(services, {
    metadata: { name: 'istio-eastwestgateway', namespace: 'istio-system' },
    spec: { ports: [{ port: 15443 }] },
    status: { loadBalancer: { ingress: [{ ip: '198.51.100.21' }] } },
  });
  const after = await eventually(networks, (n) => n.net1?.gateways?.[0]?.address === '198.51.100.21', 10_000);
  t.is(after.net1.gateways.length, 1);

  // A broken meshNetworks edit is ignored.
  api.put(configMaps, { metadata: { name: 'istio', namespace: 'istio-system' }, data: { meshNetworks: 'networks: [oops' } });
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.deepEqual((await networks()).net1.registries, ['cluster1']);
});
