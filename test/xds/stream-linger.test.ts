import test from 'ava';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { AdsTestClient, vmNode } from '../helpers/ads-client.js';
import { eventually, startRelay, startSim } from '../helpers/harness.js';

const EDS_NAME = 'outbound|8000||httpbin.bar.svc.cluster.local';

/** A Delta VM in stream mode: CDS (wildcard) and one EDS cluster, both ACKed. */
async function connect(target: string, name: string) {
  const vm = new AdsTestClient(target, 'delta');
  vm.send({ node: vmNode({ name }), type_url: TypeUrl.cluster } as any);
  const cds: any = await vm.nextOfType(TypeUrl.cluster, 10_000);
  vm.send({ type_url: TypeUrl.cluster, response_nonce: cds.nonce } as any);
  vm.send({ type_url: TypeUrl.endpoint, resource_names_subscribe: [EDS_NAME] } as any);
  const eds: any = await vm.nextOfType(TypeUrl.endpoint, 10_000);
  vm.send({ type_url: TypeUrl.endpoint, response_nonce: eds.nonce } as any);
  const names = (response: any) => response.resources.map((r: any) => `${r.name}@${r.version}`).sort();
  return { vm, cds: names(cds), eds: names(eds) };
}

test('stream mode: a VM that reconnects within the linger window finds its upstream stream still subscribed; istiod sends nothing again, and the VM is served the same config from it', async (t) => {
  const sim = await startSim();
  t.teardown(() => sim.close());
  const relay = await startRelay({ upstream: sim.target, mode: 'stream', streamLingerSeconds: 30 });
  t.teardown(() => relay.stop());

  const first = await connect(relay.target, 'vm-a');
  const [group] = relay.groups.list();
  const before = { ...group!.upstream.stats };
  first.vm.close();
  await eventually(() => group!.phase, (phase) => phase === 'lingering');
  t.is(relay.groups.upstreamStreams(), 1, 'the upstream stream outlives the VM\'s');

  const again = await connect(relay.target, 'vm-a');
  t.teardown(() => again.vm.close());
  t.is(relay.groups.list().length, 1);
  t.is(relay.groups.list()[0], group, 'the same group, found by node and identity');
  t.is(group!.phase, 'serving');
  t.deepEqual({ cds: again.cds, eds: again.eds }, { cds: first.cds, eds: first.eds });
  t.true(await again.vm.quietFor(300));
  const after = group!.upstream.stats;
  t.is(after.streamsOpened, before.streamsOpened, 'no new upstream stream');
  t.is(after.responses, before.responses, 'istiod resent nothing');

  // Another VM is not given it, and two streams of one node at once each have their own.
  const other = await connect(relay.target, 'vm-b');
  t.teardown(() => other.vm.close());
  const twin = await connect(relay.target, 'vm-a');
  t.teardown(() => twin.vm.close());
  t.is(relay.groups.list().length, 3);
});

test('stream mode: a lingering upstream stream nobody comes back for is closed after the window', async (t) => {
  const sim = await startSim();
  t.teardown(() => sim.close());
  const relay = await startRelay({ upstream: sim.target, mode: 'stream', streamLingerSeconds: 0.3 });
  t.teardown(() => relay.stop());
  const { vm } = await connect(relay.target, 'vm-a');
  vm.close();
  await eventually(() => relay.groups.list().length, (groups) => groups === 0, 5000);
  t.is(relay.groups.upstreamStreams(), 0);
});

test('stream mode: VMs configured alike share one copy of each resource across their caches, kept apart from the message it came in', async (t) => {
  const sim = await startSim();
  t.teardown(() => sim.close());
  const relay = await startRelay({ upstream: sim.target, mode: 'stream' });
  t.teardown(() => relay.stop());
  const vms = await Promise.all(['vm-a', 'vm-b'].map((name) => connect(relay.target, name)));
  t.teardown(() => { for (const { vm } of vms) vm.close(); });
  const [a, b] = relay.groups.list().map((group) => group.cache);
  t.truthy(a && b && a !== b, 'a cache per VM');
  const resourceA = a!.get(TypeUrl.endpoint, EDS_NAME)!;
  t.is(resourceA, b!.get(TypeUrl.endpoint, EDS_NAME)!, 'one record (name, version, body), not two equal ones');
  const bodyA = resourceA.body;
  t.is(bodyA.buffer.byteLength, bodyA.length, 'its own allocation: no pool slab or upstream message kept alive by it');
});
