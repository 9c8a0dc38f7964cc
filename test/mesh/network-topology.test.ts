import { Resolver } from 'node:dns/promises';
import test from 'ava';
import { NetworkTopology } from '../../src/mesh/network-topology.js';
import { parseMeshNetworks, staticGateways } from '../../src/mesh/mesh-networks.js';
import { RelayError } from '../../src/errors.js';
import { startDnsServer } from '../helpers/dns-server.js';
import { eventually } from '../helpers/harness.js';

test('meshNetworks: registries, CIDRs and address gateways, as istiod reads them', (t) => {
  const topology = new NetworkTopology();
  t.teardown(() => topology.close());
  topology.set({ name: 'file', networks: parseMeshNetworks(`
networks:
  net1:
    endpoints: [{ fromRegistry: cluster1 }, { fromCidr: 10.1.0.0/16 }]
    gateways: [{ address: 192.0.2.10, port: 15443 }]
  vm-net:
    endpoints: [{ fromCidr: 172.16.0.0/12 }, { fromCidr: "fd00::/8" }]
`, 'test') });
  t.is(topology.networkOfRegistry('cluster1'), 'net1');
  t.is(topology.networkOfAddress('10.1.2.3'), 'net1');
  t.is(topology.networkOfAddress('172.20.0.1'), 'vm-net');
  t.is(topology.networkOfAddress('fd00::1'), 'vm-net');
  t.is(topology.networkOfAddress('8.8.8.8'), undefined);
  t.deepEqual(topology.gateways().map((g) => [g.network, g.clusterId, g.address, g.port]), [['net1', '', '192.0.2.10', 15443]], 'meshNetworks address gateways carry no cluster, as in istiod');
});

test('broken meshNetworks are refused with the key that is wrong', (t) => {
  const wrongKey = t.throws(() => parseMeshNetworks('networks:\n  net1:\n    endpoints: [{ fromRegistri: c1 }]\n', 'f.yaml'), { instanceOf: RelayError });
  t.regex(wrongKey!.message, /f\.yaml: networks\.net1\.endpoints\.0/);
  const badCidr = t.throws(() => parseMeshNetworks('networks:\n  n:\n    endpoints: [{ fromCidr: 10.0.0.0/40 }]\n', 'f.yaml'), { instanceOf: RelayError });
  t.regex(badCidr!.message, /not a CIDR/);
  t.throws(() => staticGateways(['net1=nohost']), { message: /network\[\/cluster\]=address:port/ });
});

test('gateway host names are resolved by DNS and re-resolved when their TTL runs out', async (t) => {
  const records = new Map([['gw.example.test', { addresses: ['203.0.113.5', '203.0.113.6'], ttl: 1 }]]);
  const dns = await startDnsServer(records);
  t.teardown(dns.close);
  const resolver = new Resolver({ timeout: 500, tries: 1 });
  resolver.setServers([dns.server]);
  const topology = new NetworkTopology(resolver, { minMs: 100, maxMs: 1000 });
  t.teardown(() => topology.close());
  topology.set({ name: 'flags', networks: { networks: staticGateways(['net1=gw.example.test:15443']).networks } });
  const first = await eventually(() => topology.gateways().map((g) => g.address), (addresses) => addresses.length === 2, 3000);
  t.deepEqual(first, ['203.0.113.5', '203.0.113.6']);
  t.is(topology.gateways()[0]!.port, 15443);
  records.set('gw.example.test', { addresses: ['203.0.113.9'], ttl: 1 });
  const second = await eventually(() => topology.gateways().map((g) => g.address), (addresses) => addresses[0] === '203.0.113.9', 5000);
  t.deepEqual(second, ['203.0.113.9']);
  t.is(topology.describe().networks.net1!.gateways[0]!.hostname, 'gw.example.test');
});

test('a gateway name that stops resolving keeps its last addresses', async (t) => {
  const records = new Map([['lb.example.test', { addresses: ['203.0.113.7'], ttl: 1 }]]);
  const dns = await startDnsServer(records);
  t.teardown(dns.close);
  const resolver = new Resolver({ timeout: 300, tries: 1 });
  resolver.setServers([dns.server]);
  const topology = new NetworkTopology(resolver, { minMs: 100, maxMs: 1000 });
  t.teardown(() => topology.close());
  topology.set({ name: 'flags', networks: { networks: staticGateways(['net1=lb.example.test:15443']).networks } });
  await eventually(() => topology.gateways().length, (n) => n === 1, 3000);
  await dns.close();
  const before = dns.queries();
  await new Promise((resolve) => setTimeout(resolve, 1500));
  t.true(before > 0);
  t.deepEqual(topology.gateways().map((g) => g.address), ['203.0.113.7']);
});
