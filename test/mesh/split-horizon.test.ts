import test from 'ava';
import { splitHorizon, type ClusterLoadAssignmentObject, type LbEndpointObject, type NetworkGateway } from '../../src/mesh/split-horizon.js';
import { jsonToStruct, structToJson } from '../../src/xds/protocol/struct.js';

/**
 * Vectors from istiod's own test of EndpointsByNetworkFilter (pilot/pkg/xds/endpoints/
 * ep_filters_test.go, `environment` and `testShards`): the same gateways and endpoints, the same
 * expected addresses, weights and workload metadata. Left out: the HBONE-tunnel endpoint 10.0.0.3
 * and the hostname endpoint `foo.bar`, which istiod drops before EDS and so never reach a relay.
 */
const gateways: NetworkGateway[] = [
  { network: 'network1', clusterId: 'cluster1a', address: '1.1.1.1', port: 80 },
  { network: 'network2', clusterId: 'cluster2a', address: '2.2.2.2', port: 80 },
  { network: 'network2', clusterId: 'cluster2b', address: '2.2.2.20', port: 80 },
  { network: 'network2', clusterId: 'cluster2b', address: '2.2.2.21', port: 80 },
  { network: 'network3', clusterId: 'cluster3', address: '3.3.3.3', port: 443 },
];

const shards: Array<[string, string, string[]]> = [
  ['cluster1a', 'network1', ['10.0.0.1']],
  ['cluster1b', 'network1', ['10.0.0.2']],
  ['cluster2a', 'network2', ['20.0.0.1']],
  ['cluster2b', 'network2', ['20.0.0.2', '20.0.0.3']],
  ['cluster4', 'network4', ['40.0.0.1']],
];

const location = new Map<string, { network: string; clusterId: string }>();

function endpoint(address: string, clusterId: string, tlsMode = 'istio'): LbEndpointObject {
  return {
    endpoint: { address: { socket_address: { address, port_value: 8080 } } },
    metadata: {
      filter_metadata: {
        'envoy.transport_socket_match': jsonToStruct({ tlsMode }),
        istio: jsonToStruct({ workload: `;ns;example;;${clusterId}` }),
      },
    },
  };
}

function assignment(tlsMode = 'istio'): ClusterLoadAssignmentObject {
  const lbEndpoints = shards.flatMap(([clusterId, network, addresses]) => addresses.map((address) => {
    location.set(address, { network, clusterId });
    return endpoint(address, clusterId, tlsMode);
  }));
  return { cluster_name: 'outbound|80||example.ns.svc.cluster.local', endpoints: [{ lb_endpoints: lbEndpoints }] };
}

function translate(proxyNetwork: string, cla = assignment()) {
  const result = splitHorizon(cla, {
    proxyNetwork,
    gateways,
    locate: (ep) => location.get(ep.endpoint!.address!.socket_address!.address!)!,
  });
  const [locality] = result.endpoints!;
  return {
    byAddress: locality!.lb_endpoints!
      .map((ep) => ({ address: ep.endpoint!.address!.socket_address!.address!, weight: ep.load_balancing_weight!.value! }))
      .sort((a, b) => (a.address < b.address ? -1 : 1)),
    workloads: locality!.lb_endpoints!.map((ep) => structToJson(ep.metadata!.filter_metadata!.istio).workload),
    localityWeight: locality!.load_balancing_weight?.value ?? 0,
    raw: locality!.lb_endpoints!,
  };
}

const vectors: Array<{ proxy: string; what: string; want: Array<{ address: string; weight: number }>; workloads: string[] }> = [
  {
    proxy: 'network1',
    what: 'local endpoints direct, network2 per-cluster gateways, gateway-less network4 direct (weights ×6)',
    want: [
      { address: '10.0.0.1', weight: 6 }, { address: '10.0.0.2', weight: 6 },
      { address: '2.2.2.2', weight: 6 }, { address: '2.2.2.20', weight: 6 }, { address: '2.2.2.21', weight: 6 },
      { address: '40.0.0.1', weight: 6 },
    ],
    workloads: [';ns;example;;cluster1a', ';ns;example;;cluster1b', ';ns;example;;cluster4', ';;;;cluster2a', ';;;;cluster2b', ';;;;cluster2b'],
  },
  {
    proxy: 'network2',
    what: 'network1 endpoints aggregate on its single gateway (cluster fallback to network)',
    want: [
      { address: '1.1.1.1', weight: 12 },
      { address: '20.0.0.1', weight: 6 }, { address: '20.0.0.2', weight: 6 }, { address: '20.0.0.3', weight: 6 },
      { address: '40.0.0.1', weight: 6 },
    ],
    workloads: [';ns;example;;cluster2a', ';ns;example;;cluster2b', ';ns;example;;cluster2b', ';ns;example;;cluster4', ';;;;cluster1a'],
  },
];

for (const vector of vectors) {
  test(`istiod vector from_${vector.proxy}: ${vector.what}`, (t) => {
    const got = translate(vector.proxy);
    t.deepEqual(got.byAddress, vector.want);
    t.is(got.localityWeight, 36);
    t.deepEqual(got.workloads, vector.workloads);
  });
}

for (const network of ['network3', 'network4']) {
  test(`istiod vector from_${network}: every remote network through its gateways`, (t) => {
    const got = translate(network);
    t.deepEqual(got.byAddress, [
      { address: '1.1.1.1', weight: 12 },
      { address: '2.2.2.2', weight: 6 }, { address: '2.2.2.20', weight: 6 }, { address: '2.2.2.21', weight: 6 },
      { address: '40.0.0.1', weight: 6 },
    ]);
    t.is(got.localityWeight, 36);
    t.deepEqual(got.workloads, [';ns;example;;cluster4', ';;;;cluster1a', ';;;;cluster2a', ';;;;cluster2b', ';;;;cluster2b']);
  });
}

test('gateway endpoints carry tlsMode istio (so the sidecar uses mTLS with SNI) and are sorted by address', (t) => {
  const got = translate('network4');
  const gatewaysOut = got.raw.filter((ep) => ep.endpoint!.address!.socket_address!.address!.startsWith('1.') || ep.endpoint!.address!.socket_address!.address!.startsWith('2.'));
  t.deepEqual(gatewaysOut.map((ep) => ep.endpoint!.address!.socket_address!.address), ['1.1.1.1', '2.2.2.2', '2.2.2.20', '2.2.2.21']);
  for (const ep of gatewaysOut) t.deepEqual(structToJson(ep.metadata!.filter_metadata!['envoy.transport_socket_match']), { tlsMode: 'istio' });
});

test('remote endpoints without mTLS are dropped; a locality left empty is kept without a weight', (t) => {
  const got = translate('network3', assignment('disabled'));
  t.deepEqual(got.byAddress, [{ address: '40.0.0.1', weight: 6 }], 'only the gateway-less network stays reachable');
  const lonely = splitHorizon({ cluster_name: 'c', endpoints: [{ locality: { zone: 'z' }, lb_endpoints: [endpoint('20.0.0.1', 'cluster2a', 'disabled')] }] }, {
    proxyNetwork: 'network1', gateways, locate: () => ({ network: 'network2', clusterId: 'cluster2a' }),
  });
  t.deepEqual(lonely.endpoints, [{ locality: { zone: 'z' }, lb_endpoints: [] }]);
});

test('no gateways anywhere means multi-network is off: the assignment is returned as it is', (t) => {
  const cla = assignment();
  t.is(splitHorizon(cla, { proxyNetwork: 'network1', gateways: [], locate: () => ({ network: 'network2', clusterId: '' }) }), cla);
});

test('explicit weights are scaled and split; a huge weight clips at the uint32 maximum', (t) => {
  const weighted = (address: string, weight: number): LbEndpointObject => ({ ...endpoint(address, 'cluster2b'), load_balancing_weight: { value: weight } });
  const result = splitHorizon({ cluster_name: 'c', endpoints: [{ lb_endpoints: [weighted('20.0.0.2', 5), weighted('10.0.0.1', 0xfffffff0)] }] }, {
    proxyNetwork: 'network1', gateways,
    locate: (ep) => (ep.endpoint!.address!.socket_address!.address === '10.0.0.1' ? { network: 'network1', clusterId: 'cluster1a' } : { network: 'network2', clusterId: 'cluster2b' }),
  });
  const weights = result.endpoints![0]!.lb_endpoints!.map((ep) => [ep.endpoint!.address!.socket_address!.address, ep.load_balancing_weight!.value]);
  t.deepEqual(weights, [['10.0.0.1', 0xffffffff], ['2.2.2.20', 15], ['2.2.2.21', 15]]);
});
