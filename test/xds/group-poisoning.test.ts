import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { AdsTestClient, vmNode } from '../helpers/ads-client.js';
import { eventually, startRelay } from '../helpers/harness.js';
import { startStaticUpstream, type StaticUpstream } from '../helpers/static-upstream.js';
import type { ServeConfig } from '../../src/config/schema.js';

const EDS = TypeUrl.endpoint;
const bogus = (from: number, count: number) => Array.from({ length: count }, (_, i) => `outbound|80||no-such-service-${from + i}.example.svc.cluster.local`);

async function mesh(t: import('ava').ExecutionContext, upstream: StaticUpstream, overrides: Partial<ServeConfig>) {
  const relay = await startRelay({ upstream: upstream.target, mode: 'group', ...overrides });
  const clients: AdsTestClient<'delta'>[] = [];
  t.teardown(async () => {
    for (const client of clients) client.close();
    await relay.stop();
  });
  const vm = (name: string) => {
    const client = new AdsTestClient(relay.target, 'delta');
    clients.push(client);
    return { client, node: vmNode({ name }) };
  };
  return { relay, vm };
}

/** A VM of the group subscribed to e0 and e1, served and ACKed. */
async function servedVictim(t: import('ava').ExecutionContext, vm: Awaited<ReturnType<typeof mesh>>['vm']) {
  const victim = vm('victim');
  victim.client.send({ node: victim.node, type_url: EDS, resource_names_subscribe: ['e0', 'e1'] });
  const first = await victim.client.next();
  t.is(first.resources.length, 2);
  victim.client.send({ type_url: EDS, response_nonce: first.nonce });
  return victim;
}

const groupNames = (relay: Awaited<ReturnType<typeof startRelay>>) => relay.groups.list()[0]?.subscriptionSummary()[EDS]?.names ?? 0;

test('a VM subscribing names the upstream does not have is ended past the per-VM limit; the rest of its group keeps being served, and the names leave the upstream subscription', async (t) => {
  const upstream = await startStaticUpstream();
  t.teardown(() => upstream.close());
  upstream.set(EDS, { e0: 'A', e1: 'B' });
  const { relay, vm } = await mesh(t, upstream, { maxAbsentNamesPerVm: 100, absentNameGraceSeconds: 0.3 });
  const victim = await servedVictim(t, vm);

  const attacker = vm('attacker');
  attacker.client.send({ node: attacker.node, type_url: EDS, resource_names_subscribe: ['e0', ...bogus(0, 500)] });
  const status = await attacker.client.status;
  t.is(status.code, grpc.status.RESOURCE_EXHAUSTED);
  t.regex(status.details, /500 names the upstream does not have, over the limit of 100 per VM/);
  t.is(relay.groups.list().length, 1, 'the attacker shared the victim\'s group');
  await eventually(() => groupNames(relay), (names) => names === 2);

  upstream.set(EDS, { e0: 'A2', e1: 'B' });
  const update = await victim.client.next();
  t.deepEqual(update.resources.map((resource) => resource.name), ['e0'], 'the victim gets the next push');
  t.regex(await (await fetch(`${relay.adminUrl}/metrics`)).text(), /meshrelay_vms_ended_for_absent_names_total 1/);
});

test('a group holding more absent names than a group may loses the member holding the most, not the others', async (t) => {
  const upstream = await startStaticUpstream();
  t.teardown(() => upstream.close());
  upstream.set(EDS, { e0: 'A' });
  const { relay, vm } = await mesh(t, upstream, { maxAbsentNamesPerVm: 1000, maxAbsentNamesPerGroup: 500, absentNameGraceSeconds: 0.3 });
  const small = vm('small');
  small.client.send({ node: small.node, type_url: EDS, resource_names_subscribe: ['e0', ...bogus(0, 200)] });
  t.is((await small.client.next()).resources.length, 1);
  const large = vm('large');
  large.client.send({ node: large.node, type_url: EDS, resource_names_subscribe: ['e0', ...bogus(1000, 400)] });
  const status = await large.client.status;
  t.is(status.code, grpc.status.RESOURCE_EXHAUSTED);
  t.regex(status.details, /more than 500 names the upstream does not have, and this VM asked for the most \(400\)/);
  await eventually(() => groupNames(relay), (names) => names === 201);
  upstream.set(EDS, { e0: 'A2' });
  t.is((await small.client.next()).resources.length, 1, 'the member under the limits stays and is served');
});

test('a large subscription goes upstream in requests the upstream accepts: a VM asking for 3,000 names gets them all', async (t) => {
  // Each name is ~50 bytes: one request of all 3,000 would pass a 64 KiB message limit.
  const upstream = await startStaticUpstream(0, { maxMessageBytes: 64 * 1024 });
  t.teardown(() => upstream.close());
  const names = Array.from({ length: 3000 }, (_, i) => `outbound|80||service-${i}.default.svc.cluster.local`);
  upstream.set(EDS, Object.fromEntries(names.map((name) => [name, 'x'])));
  const { vm } = await mesh(t, upstream, {});
  const big = vm('big');
  big.client.send({ node: big.node, type_url: EDS, resource_names_subscribe: names });
  const received = new Set<string>();
  while (received.size < names.length) {
    const response = await big.client.next();
    for (const resource of response.resources) received.add(resource.name);
    big.client.send({ type_url: EDS, response_nonce: response.nonce });
  }
  t.is(received.size, 3000);
});

test('an upstream that refuses the group\'s resubscribe after a restart: the member holding the absent names is ended, the group resubscribes and its other VMs are served', async (t) => {
  // The upstream refuses requests naming more than 500 resources (istiod refuses messages over its limit).
  let upstream = await startStaticUpstream(0, { maxNamesPerRequest: 500 });
  const port = upstream.address.port;
  t.teardown(() => upstream.close());
  upstream.set(EDS, { e0: 'A', e1: 'B' });
  const { relay, vm } = await mesh(t, upstream, { maxAbsentNamesPerVm: 1000, absentNameGraceSeconds: 0.3 });
  const victim = await servedVictim(t, vm);
  // Two requests of 300 absent names each: each alone is accepted, their union (602 names) is not.
  const attacker = vm('attacker');
  attacker.client.send({ node: attacker.node, type_url: EDS, resource_names_subscribe: bogus(0, 300) });
  await new Promise((resolve) => setTimeout(resolve, 100));
  attacker.client.send({ type_url: EDS, resource_names_subscribe: bogus(300, 300) });
  await eventually(() => groupNames(relay), (names) => names === 602);
  await new Promise((resolve) => setTimeout(resolve, 500));

  await upstream.close();
  upstream = await startStaticUpstream(port, { maxNamesPerRequest: 500 });
  upstream.set(EDS, { e0: 'A-restarted', e1: 'B' });
  const status = await attacker.client.status;
  t.is(status.code, grpc.status.RESOURCE_EXHAUSTED);
  t.regex(status.details, /refused this VM's group's subscription .* asked for the most names the upstream does not have \(600\)/);
  const update = await victim.client.next();
  t.deepEqual(update.resources.map((resource) => resource.name), ['e0'], 'the victim gets the restarted upstream\'s change');
});
