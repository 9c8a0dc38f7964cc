import test from 'ava';
import { GrpcServer } from '../../src/transport/grpc-server.js';
import { GrpcStatus } from '../../src/errors.js';
import { AdsMethod } from '../../src/xds/protocol/envelopes.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { startSimIstiod } from '../../src/sim/sim-server.js';
import { AdsTestClient, vmNode } from '../helpers/ads-client.js';
import { defaultMesh, eventually, startRelay, startSim, testLog } from '../helpers/harness.js';

/** Subscribes like Envoy (wildcard CDS/LDS, named EDS/RDS) and ACKs everything it gets. */
async function envoyLike(vm: AdsTestClient<'delta'>, eds: string[], rds: string[]) {
  vm.send({ node: vmNode(), type_url: TypeUrl.cluster });
  vm.send({ type_url: TypeUrl.endpoint, resource_names_subscribe: eds });
  vm.send({ type_url: TypeUrl.listener });
  vm.send({ type_url: TypeUrl.route, resource_names_subscribe: rds });
  for (let i = 0; i < 4; i++) {
    const response = await vm.next();
    vm.send({ type_url: response.type_url, response_nonce: response.nonce });
  }
}

for (const upstreamProtocol of ['delta', 'sotw'] as const) {
  test(`[upstream ${upstreamProtocol}] upstream killed mid-churn and restarted: VMs keep their streams and get only what changed`, async (t) => {
    const mesh = defaultMesh();
    const first = await startSim(mesh);
    const port = first.address.port;
    const relay = await startRelay({ upstream: first.target, upstreamProtocol });
    const vm = new AdsTestClient(relay.target, 'delta');
    let second: Awaited<ReturnType<typeof startSimIstiod>> | undefined;
    t.teardown(async () => {
      vm.close();
      await relay.stop();
      await first.close();
      await second?.close();
    });
    const httpbin = 'outbound|8000||httpbin.bar.svc.cluster.local';
    await envoyLike(vm, [httpbin, 'outbound|9080||reviews.bookinfo.svc.cluster.local'], ['8000', '9080']);

    // Kill the upstream while it is pushing endpoint churn.
    first.sim.startChurn(200);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await first.close();
    await eventually(() => relay.groups.list()[0]!.upstream.stats.state, (state) => state === 'backoff');
    await vm.quietFor(100);
    const consumedBeforeRestart = vm.responses.length;
    for (let i = vm.unread; i > 0; i--) await vm.next();

    // The VM's stream is untouched and its config is still held by the relay.
    t.is(relay.ads.connectedProxies, 1);
    t.true((await fetch(`${relay.adminUrl}/readyz`)).ok, 'serving from cache is still ready');

    // The restarted istiod has a fresh push counter and one real change: httpbin lost an endpoint.
    const restartedMesh = { ...mesh, services: mesh.services.map((s) => (s.name === 'httpbin' ? { ...s, endpoints: s.endpoints.slice(0, 1) } : s)) };
    second = await startSimIstiod(restartedMesh, { host: '127.0.0.1', port }, testLog);
    await eventually(() => relay.groups.list()[0]!.upstream.stats.streamsOpened, (opened) => opened >= 2, 10_000);
    const afterRestart = await vm.next(10_000);
    t.is(afterRestart.type_url, TypeUrl.endpoint);
    // Churn may have changed reviews' weights before the kill; after the restart both revert or
    // change, but nothing else does: no CDS, LDS or RDS resend.
    t.true(afterRestart.resources.some((resource) => resource.name === httpbin));
    t.true(afterRestart.resources.every((resource) => [httpbin, 'outbound|9080||reviews.bookinfo.svc.cluster.local'].includes(resource.name)));
    t.true(await vm.quietFor(500), 'nothing else is resent');
    t.true(vm.responses.slice(consumedBeforeRestart).every((response) => response.type_url === TypeUrl.endpoint));
  });
}

test('a relay whose upstream is unreachable is not ready, and becomes ready when it appears', async (t) => {
  const sim = await startSim();
  const port = sim.address.port;
  await sim.close();
  const relay = await startRelay({ upstream: `127.0.0.1:${port}` });
  let late: Awaited<ReturnType<typeof startSimIstiod>> | undefined;
  t.teardown(async () => {
    await relay.stop();
    await late?.close();
  });
  const notReady = await fetch(`${relay.adminUrl}/readyz`);
  t.is(notReady.status, 503);
  late = await startSimIstiod(defaultMesh(), { host: '127.0.0.1', port }, testLog);
  await eventually(async () => (await fetch(`${relay.adminUrl}/readyz`)).status, (status) => status === 200, 15_000);
  t.pass();
});

// A backoff far longer than any test: what happens before it runs out is not the backoff's doing.
const slowBackoff = { initialMs: 60_000, maxMs: 60_000, multiplier: 1, jitter: 0 };

test('an upstream that restarts is streamed to again as soon as it is back, not after the stream backoff: the connection\'s return reopens the stream', async (t) => {
  const first = await startSim();
  const port = first.address.port;
  const relay = await startRelay({ upstream: first.target }, slowBackoff);
  const vm = new AdsTestClient(relay.target, 'delta');
  let second: Awaited<ReturnType<typeof startSimIstiod>> | undefined;
  t.teardown(async () => {
    vm.close();
    await relay.stop();
    await second?.close();
  });
  vm.send({ node: vmNode(), type_url: TypeUrl.cluster });
  const before = await vm.next();
  vm.send({ type_url: TypeUrl.cluster, response_nonce: before.nonce });
  await first.close();
  const group = relay.groups.list()[0]!;
  await eventually(() => group.upstream.stats.state, (state) => state === 'backoff');
  const restartedMesh = { ...defaultMesh(), services: defaultMesh().services.slice(1) };
  second = await startSimIstiod(restartedMesh, { host: '127.0.0.1', port }, testLog);
  await eventually(() => group.upstream.stats.state, (state) => state === 'streaming', 15_000);
  t.is(group.upstream.stats.streamsOpened, 2, 'one new stream, opened when the connection came back');
  const after = await vm.next(10_000);
  t.true(after.removed_resources.length > 0, 'the VM hears what changed while istiod was away');
});

test('a stream the upstream ends on a live connection is reopened only after the backoff, not at once', async (t) => {
  let calls = 0;
  const refusing = new GrpcServer({ maxMessageBytes: 1 << 20, maxStreamsPerConnection: 100, log: testLog });
  refusing.register(AdsMethod.delta, ((call: { end(code: GrpcStatus, message: string): void }) => {
    calls++;
    call.end(GrpcStatus.UNAVAILABLE, 'not now');
  }) as never, { longLived: true });
  const address = await refusing.listen({ host: '127.0.0.1', port: 0 });
  const relay = await startRelay({ upstream: `127.0.0.1:${address.port}` }, { initialMs: 400, maxMs: 400, multiplier: 1, jitter: 0 });
  const vm = new AdsTestClient(relay.target, 'delta');
  t.teardown(async () => {
    vm.close();
    await relay.stop();
    await refusing.close();
  });
  vm.send({ node: vmNode(), type_url: TypeUrl.cluster });
  await eventually(() => calls, (count) => count >= 2, 5000);
  const group = relay.groups.list()[0]!;
  const counted = calls;
  await new Promise((resolve) => setTimeout(resolve, 1000));
  // One every 400 ms: two or three more in a second, where reopening at once would be hundreds.
  t.true(calls - counted <= 3, `${calls - counted} streams in a second`);
  t.regex(group.upstream.stats.lastError, /not now/);
});
