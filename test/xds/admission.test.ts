import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { AdsTestClient, vmNode } from '../helpers/ads-client.js';
import { startRelay, startSim } from '../helpers/harness.js';

test('a connect storm beyond the admission queue is told UNAVAILABLE; admitted and queued streams are served', async (t) => {
  const sim = await startSim();
  const relay = await startRelay({ upstream: sim.target, admissionRate: 10, admissionBurst: 2, admissionQueue: 3, admissionMaxWaitSeconds: 5 });
  const connection = new grpc.Client(relay.target, grpc.credentials.createInsecure());
  const vms = Array.from({ length: 10 }, () => new AdsTestClient(relay.target, 'delta', connection));
  t.teardown(async () => {
    for (const vm of vms) vm.close();
    connection.close();
    await relay.stop();
    await sim.close();
  });
  vms.forEach((vm, i) => vm.send({ node: vmNode({ name: `storm-${i}` }), type_url: TypeUrl.cluster }));
  const outcomes = await Promise.all(vms.map((vm) => Promise.race([vm.next(5000).then(() => 'served'), vm.status.then((s) => grpc.status[s.code])])));
  t.is(outcomes.filter((o) => o === 'served').length, 5, outcomes.join(','));
  t.is(outcomes.filter((o) => o === 'UNAVAILABLE').length, 5);
});

test('VMs reconnecting with the versions they hold are admitted before new ones', async (t) => {
  const sim = await startSim();
  const relay = await startRelay({ upstream: sim.target, admissionRate: 2, admissionBurst: 1, admissionQueue: 100, admissionMaxWaitSeconds: 10 });
  const connection = new grpc.Client(relay.target, grpc.credentials.createInsecure());
  const order: string[] = [];
  const clients: Array<AdsTestClient<'delta'>> = [];
  t.teardown(async () => {
    for (const vm of clients) vm.close();
    connection.close();
    await relay.stop();
    await sim.close();
  });
  const open = (name: string, held?: Record<string, string>) => {
    const vm = new AdsTestClient(relay.target, 'delta', connection);
    clients.push(vm);
    vm.send({ node: vmNode({ name }), type_url: TypeUrl.cluster, ...(held ? { initial_resource_versions: held } : {}) });
    return vm.next(10_000).then(() => { order.push(name); });
  };
  // 'first' takes the one token; the others wait in the queue (the next token comes in 500 ms),
  // where the returning VM, though it came last, goes before the new ones.
  const waits = [open('first')];
  await new Promise((resolve) => setTimeout(resolve, 20));
  waits.push(open('new-1'), open('new-2'), open('new-3'));
  await new Promise((resolve) => setTimeout(resolve, 20));
  waits.push(open('returning', { 'outbound|8000||httpbin.bar.svc.cluster.local': 'v1' }));
  await Promise.all(waits);
  const after = order.filter((name) => name !== 'first');
  t.is(after[0], 'returning', order.join(','));
});
