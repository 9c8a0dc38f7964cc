import * as grpc from '@grpc/grpc-js';
import test, { type ExecutionContext } from 'ava';
import type { ServeConfig } from '../../src/config/schema.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { AdsTestClient, vmNode } from '../helpers/ads-client.js';
import { eventually, startRelay, startSim } from '../helpers/harness.js';

const CDS = TypeUrl.cluster;

function clients(count: number, target: string): grpc.Client[] {
  return Array.from({ length: count }, () => new grpc.Client(target, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }));
}

test('group mode: 1,000 VMs in 4 groups ride exactly 4 upstream streams', async (t) => {
  const sim = await startSim();
  const relay = await startRelay({ upstream: sim.target, mode: 'group' });
  const connections = clients(4, relay.target);
  const vms: Array<AdsTestClient<'delta'>> = [];
  t.teardown(async () => {
    for (const vm of vms) vm.close();
    for (const connection of connections) connection.close();
    await relay.stop();
    await sim.close();
  });
  for (let i = 0; i < 1000; i++) {
    const vm = new AdsTestClient(relay.target, 'delta', connections[i % 4]);
    vm.send({ node: vmNode({ name: `vm-${i}`, ip: `172.16.${Math.floor(i / 250)}.${i % 250}`, serviceAccount: `sa-${i % 4}` }), type_url: CDS });
    vms.push(vm);
  }
  const firsts = await Promise.all(vms.map((vm) => vm.next(30_000)));
  t.true(firsts.every((response) => response.resources.length === 7), 'every VM got the full CDS');
  t.is(relay.groups.list().length, 4);
  t.is(relay.groups.upstreamStreams(), 4);
  t.is(sim.ads.connectedProxies, 4, 'the upstream sees 4 streams');
  t.is(sim.server.connections, 2, 'over the relay\'s pool of 2 connections');
  const members = relay.groups.list().map((group) => group.members.size).sort();
  t.deepEqual(members, [250, 250, 250, 250]);
});

test('stream mode: each VM gets its own upstream stream, all over the small connection pool', async (t) => {
  const sim = await startSim();
  // No linger window: the upstream streams go with their VMs (stream-linger.test.ts covers the window).
  const relay = await startRelay({ upstream: sim.target, mode: 'stream', upstreamConnections: 2, streamLingerSeconds: 0 });
  const vms = Array.from({ length: 20 }, () => new AdsTestClient(relay.target, 'sotw'));
  t.teardown(async () => {
    for (const vm of vms) vm.close();
    await relay.stop();
    await sim.close();
  });
  vms.forEach((vm, i) => vm.send({ node: vmNode({ name: `vm-${i}`, serviceAccount: 'same' }), type_url: CDS }));
  await Promise.all(vms.map((vm) => vm.next(10_000)));
  t.is(relay.groups.upstreamStreams(), 20);
  t.is(sim.ads.connectedProxies, 20);
  t.is(sim.server.connections, 2);
  const proxiesSeenUpstream = sim.ads.syncStatus().map((status) => status.proxy).sort();
  t.deepEqual(proxiesSeenUpstream, vms.map((_, i) => `sidecar~172.16.0.5~vm-${i}.vm~vm.svc.cluster.local`).sort(), 'istiod sees each VM\'s own node');
  for (const vm of vms) vm.close();
  await eventually(() => sim.ads.connectedProxies, (count) => count === 0);
  t.pass('upstream streams close with their VM');
});

test('mode can be chosen per namespace', async (t) => {
  const sim = await startSim();
  const relay = await startRelay({ upstream: sim.target, mode: 'group', modeByNamespace: { legacy: 'stream' } });
  const vms = [0, 1].flatMap((i) => [
    { vm: new AdsTestClient(relay.target, 'delta'), node: vmNode({ name: `g-${i}`, namespace: 'vm' }) },
    { vm: new AdsTestClient(relay.target, 'delta'), node: vmNode({ name: `s-${i}`, namespace: 'legacy' }) },
  ]);
  t.teardown(async () => {
    for (const { vm } of vms) vm.close();
    await relay.stop();
    await sim.close();
  });
  for (const { vm, node } of vms) vm.send({ node, type_url: CDS });
  await Promise.all(vms.map(({ vm }) => vm.next()));
  const modes = relay.groups.list().map((group) => group.mode).sort();
  t.deepEqual(modes, ['group', 'stream', 'stream']);
});

test('aggregation key: per-instance metadata shares a group, unknown metadata keys split groups', async (t) => {
  const sim = await startSim();
  const relay = await startRelay({ upstream: sim.target });
  const nodes = [
    vmNode({ name: 'a', ip: '10.0.0.1' }),
    vmNode({ name: 'b', ip: '10.0.0.2' }),
    vmNode({ name: 'c', ip: '10.0.0.3', extra: { SOME_FUTURE_KEY: 'x' } }),
    vmNode({ name: 'd', ip: '10.0.0.4', labels: { app: 'vm-app', version: 'v2' } }),
    vmNode({ name: 'e', ip: '10.0.0.5', network: 'net1' }),
  ];
  const vms = nodes.map(() => new AdsTestClient(relay.target, 'sotw'));
  t.teardown(async () => {
    for (const vm of vms) vm.close();
    await relay.stop();
    await sim.close();
  });
  vms.forEach((vm, i) => vm.send({ node: nodes[i]!, type_url: CDS }));
  await Promise.all(vms.map((vm) => vm.next()));
  const syncz = await (await fetch(`${relay.adminUrl}/debug/syncz`)).json() as Array<{ proxy: string; key: string }>;
  const keyOf = (name: string) => syncz.find((entry) => entry.proxy.includes(`~${name}.vm~`))!.key;
  t.is(keyOf('a'), keyOf('b'), 'differing name, IP and INSTANCE_IPS share a group');
  t.not(keyOf('c'), keyOf('a'), 'an unknown metadata key is part of the key');
  t.not(keyOf('d'), keyOf('a'), 'labels are part of the key');
  t.not(keyOf('e'), keyOf('a'), 'network is part of the key');
  t.is(relay.groups.list().length, 4);
});

test('group mode: a VM\'s NACK stays at the relay and the rest of its group keeps getting updates', async (t) => {
  const sim = await startSim();
  const relay = await startRelay({ upstream: sim.target });
  const bad = new AdsTestClient(relay.target, 'sotw');
  const good = new AdsTestClient(relay.target, 'sotw');
  t.teardown(async () => {
    bad.close();
    good.close();
    await relay.stop();
    await sim.close();
  });
  const edsName = 'outbound|8000||httpbin.bar.svc.cluster.local';
  for (const [vm, name] of [[bad, 'bad'], [good, 'good']] as const) {
    vm.send({ node: vmNode({ name }), type_url: TypeUrl.endpoint, resource_names: [edsName] });
  }
  const [badFirst, goodFirst] = await Promise.all([bad.next(), good.next()]);
  bad.send({ type_url: TypeUrl.endpoint, response_nonce: badFirst!.nonce, resource_names: [edsName], error_detail: { code: 3, message: 'rejected' } });
  good.send({ type_url: TypeUrl.endpoint, response_nonce: goodFirst!.nonce, version_info: goodFirst!.version_info, resource_names: [edsName] });
  await bad.quietFor(200);
  const upstreamView = sim.ads.syncStatus();
  t.is(upstreamView.length, 1);
  t.is(upstreamView[0]!.types.EDS!.nacks, 0, 'istiod never hears the NACK');
  const httpbin = sim.sim.meshModel.services.find((s) => s.name === 'httpbin')!;
  sim.sim.setEndpoints('httpbin', 'bar', httpbin.endpoints.slice(0, 1));
  const update = await good.next();
  t.is(update.type_url, TypeUrl.endpoint);
  t.not(update.version_info, goodFirst!.version_info);
});

for (const upstreamProtocol of ['delta', 'sotw'] as const) {
  test(`[upstream ${upstreamProtocol}] stream mode: the VM's own NACK and health report reach istiod`, async (t) => {
    const sim = await startSim();
    const relay = await startRelay({ upstream: sim.target, mode: 'stream', upstreamProtocol });
    const vm = new AdsTestClient(relay.target, 'delta');
    t.teardown(async () => {
      vm.close();
      await relay.stop();
      await sim.close();
    });
    vm.send({ node: vmNode({ name: 'picky' }), type_url: CDS });
    const first = await vm.next();
    vm.send({ type_url: CDS, response_nonce: first.nonce, error_detail: { code: 3, message: 'cluster rejected by envoy' } });
    vm.send({ type_url: TypeUrl.healthInformation, error_detail: { code: 2, message: 'app not ready' } });
    const [upstreamView] = await eventually(() => sim.ads.syncStatus(), (status) => status[0]?.types.CDS?.nacks === 1 && status[0]?.health !== undefined);
    t.is(upstreamView!.proxy, 'sidecar~172.16.0.5~picky.vm~vm.svc.cluster.local');
    t.is(upstreamView!.types.CDS!.lastNack!.message, 'cluster rejected by envoy');
    t.deepEqual({ healthy: upstreamView!.health!.healthy, message: upstreamView!.health!.message }, { healthy: false, message: 'app not ready' });
  });
}

/** A group-mode relay before the sim, and VMs whose app label picks their group. */
async function labelledVms(t: ExecutionContext, overrides: Partial<ServeConfig>) {
  const sim = await startSim();
  const relay = await startRelay({ upstream: sim.target, mode: 'group', ...overrides });
  const vms: Array<AdsTestClient<'delta'>> = [];
  t.teardown(async () => {
    for (const vm of vms) vm.close();
    await relay.stop();
    await sim.close();
  });
  const connect = (name: string, app: string) => {
    const vm = new AdsTestClient(relay.target, 'delta');
    vms.push(vm);
    vm.send({ node: vmNode({ name, labels: { app } }), type_url: CDS });
    return vm;
  };
  return { relay, connect };
}

test('VMs with ever new metadata cannot turn one relay into N upstream streams: past maxGroups a VM needing a new group is RESOURCE_EXHAUSTED, VMs of existing groups are served', async (t) => {
  const { relay, connect } = await labelledVms(t, { maxGroups: 2 });
  for (const app of ['a', 'b']) t.true((await connect(`vm-${app}`, app).next()).resources.length > 0);
  const unique = connect('vm-unique', 'unique-label-1');
  const status = await unique.status;
  t.is(status.code, grpc.status.RESOURCE_EXHAUSTED);
  t.regex(status.details, /maxGroups/);
  t.true((await connect('vm-a-2', 'a').next()).resources.length > 0, 'a VM of an existing group is still served');
  t.is(relay.groups.upstreamStreams(), 2);
  t.regex(await (await fetch(`${relay.adminUrl}/metrics`)).text(), /meshrelay_groups_refused_total\{reason="max_groups"\} 1/);
});

test('new groups are created at a bounded rate: past the burst a VM needing a new group is UNAVAILABLE and gets one once the rate allows', async (t) => {
  const { relay, connect } = await labelledVms(t, { groupCreationRate: 0.5, groupCreationBurst: 2 });
  // One after another: VMs on separate connections may arrive in any order.
  t.true((await connect('vm-a', 'a').next()).resources.length > 0);
  t.true((await connect('vm-b', 'b').next()).resources.length > 0);
  const status = await connect('vm-c', 'c').status;
  t.is(status.code, grpc.status.UNAVAILABLE);
  t.regex(status.details, /groupCreationRate/);
  t.true((await connect('vm-a-2', 'a').next()).resources.length > 0, 'a VM of an existing group needs no new group');
  await new Promise((resolve) => setTimeout(resolve, 2100));
  t.true((await connect('vm-c-retry', 'c').next()).resources.length > 0, 'the retry, once the rate allows, gets its group');
  t.regex(await (await fetch(`${relay.adminUrl}/metrics`)).text(), /meshrelay_groups_refused_total\{reason="rate"\} 1/);
});
