import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { GrpcServer } from '../../src/transport/grpc-server.js';
import { AdsMethod } from '../../src/xds/protocol/envelopes.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { AdsTestClient, vmNode } from '../helpers/ads-client.js';
import { eventually, startRelay, testLog } from '../helpers/harness.js';
import { startStaticUpstream } from '../helpers/static-upstream.js';

type MisbehavingCall = { writeMessage(message: Uint8Array): boolean };

for (const [fault, misbehave] of [
  ['garbage bytes', (call: MisbehavingCall) => { call.writeMessage(Buffer.from([0xff, 0xff, 0xff, 0x0f, 0x01, 0x02])); }],
  ['an oversized message', (call: MisbehavingCall) => { call.writeMessage(Buffer.alloc(2 * 1024 * 1024, 0x0a)); }],
] as const) {
  test(`an upstream that turns to sending ${fault} is dropped and retried; VMs keep their config and new VMs are served from cache`, async (t) => {
    const real = await startStaticUpstream();
    real.set(TypeUrl.cluster, { a: 'A', b: 'B' });
    const port = real.address.port;
    const relay = await startRelay({ upstream: real.target, maxUpstreamMessageBytes: 1024 * 1024 });
    const vm = new AdsTestClient(relay.target, 'delta');
    let bad: GrpcServer | undefined;
    t.teardown(async () => {
      vm.close();
      await relay.stop();
      await bad?.close();
    });
    vm.send({ node: vmNode(), type_url: TypeUrl.cluster });
    t.is((await vm.next()).resources.length, 2);
    // The upstream goes away and comes back broken, on the same address.
    await real.close();
    bad = new GrpcServer({ maxMessageBytes: 1 << 20, maxStreamsPerConnection: 100, log: testLog });
    bad.register(AdsMethod.delta, misbehave as never, { longLived: true });
    await bad.listen({ host: '127.0.0.1', port });
    const group = relay.groups.list()[0]!;
    await eventually(() => group.upstream.stats.lastError, (error) => /malformed upstream response|RESOURCE_EXHAUSTED|larger than max/i.test(error), 10_000);
    t.is(relay.ads.connectedProxies, 1, 'the VM stream is untouched by upstream faults');
    t.is(group.cache.size(), 2, 'the cache kept the last good config');
    const late = new AdsTestClient(relay.target, 'delta');
    t.teardown(() => late.close());
    late.send({ node: vmNode({ name: 'late' }), type_url: TypeUrl.cluster });
    t.is((await late.next()).resources.length, 2, 'a new VM is served from the cache');
  });
}

test('a NACK storm from VMs in group mode never reaches the upstream, and healthy VMs keep getting updates', async (t) => {
  const upstream = await startStaticUpstream();
  upstream.set(TypeUrl.cluster, { a: 'A' });
  const relay = await startRelay({ upstream: upstream.target });
  const connection = new grpc.Client(relay.target, grpc.credentials.createInsecure());
  const nackers = Array.from({ length: 200 }, () => new AdsTestClient(relay.target, 'delta', connection));
  const healthy = new AdsTestClient(relay.target, 'delta');
  t.teardown(async () => {
    for (const vm of nackers) vm.close();
    connection.close();
    healthy.close();
    await relay.stop();
    await upstream.close();
  });
  nackers.forEach((vm, i) => vm.send({ node: vmNode({ name: `bad-${i}` }), type_url: TypeUrl.cluster }));
  healthy.send({ node: vmNode({ name: 'good' }), type_url: TypeUrl.cluster });
  await healthy.next();
  for (let round = 0; round < 5; round++) {
    const responses = await Promise.all(nackers.map((vm) => vm.next()));
    responses.forEach((response, i) => nackers[i]!.send({ type_url: TypeUrl.cluster, response_nonce: response.nonce, error_detail: { code: 3, message: 'no' } }));
    upstream.set(TypeUrl.cluster, { a: `A${round}` });
    await healthy.next();
  }
  t.is(upstream.ads.syncStatus()[0]!.types.CDS!.nacks, 0, 'istiod saw no NACK');
  const syncz = relay.ads.syncStatus();
  t.is(syncz.filter((s) => s.types.CDS!.nacks === 5).length, 200, 'every NACK recorded at the relay');
});

test('1,000 VMs reconnecting at once with the versions they hold are served without new upstream streams', async (t) => {
  const upstream = await startStaticUpstream();
  upstream.set(TypeUrl.cluster, { a: 'A', b: 'B' });
  const relay = await startRelay({ upstream: upstream.target, groupLingerSeconds: 30 });
  const connections = Array.from({ length: 4 }, () => new grpc.Client(relay.target, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }));
  t.teardown(async () => {
    for (const connection of connections) connection.close();
    await relay.stop();
    await upstream.close();
  });
  const connect = async (held?: Record<string, string>) => {
    const vms = Array.from({ length: 1000 }, (_, i) => new AdsTestClient(relay.target, 'delta', connections[i % 4]));
    vms.forEach((vm, i) => vm.send({ node: vmNode({ name: `vm-${i}` }), type_url: TypeUrl.cluster, ...(held ? { initial_resource_versions: held } : {}) }));
    return vms;
  };
  const first = await connect();
  const responses = await Promise.all(first.map((vm) => vm.next(20_000)));
  const held = Object.fromEntries(responses[0]!.resources.map((r) => [r.name, r.version]));
  for (const vm of first) vm.close();
  await eventually(() => relay.ads.connectedProxies, (n) => n === 0, 10_000);
  const streamsBefore = relay.groups.list()[0]!.upstream.stats.streamsOpened;
  const again = await connect(held);
  // Holding everything current, a wildcard reconnect gets only the empty initial answer.
  const second = await Promise.all(again.map((vm) => vm.next(20_000)));
  t.true(second.every((response) => response.resources.length === 0 && response.removed_resources.length === 0));
  t.is(relay.groups.list()[0]!.upstream.stats.streamsOpened, streamsBefore, 'the group and its upstream stream were kept');
  for (const vm of again) vm.close();
});
