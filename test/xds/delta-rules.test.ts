import test from 'ava';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import type { DeltaDiscoveryResponse } from '../../src/xds/protocol/envelopes.js';
import { rig, vmNode } from '../helpers/setup.js';

const CDS = TypeUrl.cluster;
const EDS = TypeUrl.endpoint;

function names(response: DeltaDiscoveryResponse): string[] {
  return response.resources.map((resource) => resource.name).sort();
}

const ack = (response: DeltaDiscoveryResponse) => ({ type_url: response.type_url, response_nonce: response.nonce });

for (const upstreamProtocol of ['delta', 'sotw'] as const) {
  test(`[upstream ${upstreamProtocol}] legacy wildcard gets everything; an ACK gets no resend; a change sends only that resource`, async (t) => {
    const r = await rig({ upstreamProtocol });
    t.teardown(r.close);
    r.upstream.set(CDS, { a: 'A', b: 'B', c: 'C' });
    const vm = r.delta();
    vm.send({ node: vmNode(), type_url: CDS });
    const first = await vm.next();
    t.deepEqual(names(first), ['a', 'b', 'c']);
    t.deepEqual(first.removed_resources, []);
    vm.send(ack(first));
    t.true(await vm.quietFor(300));
    r.upstream.set(CDS, { a: 'A', b: 'B2', c: 'C' });
    const second = await vm.next();
    t.deepEqual(names(second), ['b']);
    vm.send(ack(second));
    r.upstream.set(CDS, { a: 'A', b: 'B2' });
    const third = await vm.next();
    t.deepEqual(names(third), []);
    t.deepEqual(third.removed_resources, ['c']);
  });
}

test('an empty wildcard type still gets a first (empty) response so the client can finish initialising', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  r.upstream.set(TypeUrl.listener, {});
  const vm = r.delta();
  vm.send({ node: vmNode(), type_url: TypeUrl.listener });
  const first = await vm.next();
  t.deepEqual(first.resources, []);
});

test('subscription changes are honoured even with a stale nonce', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  r.upstream.set(EDS, { e1: '1', e2: '2' });
  const vm = r.delta();
  vm.send({ node: vmNode(), type_url: EDS, resource_names_subscribe: ['e1'] });
  const first = await vm.next();
  t.deepEqual(names(first), ['e1']);
  r.upstream.set(EDS, { e1: '1b', e2: '2' });
  const second = await vm.next();
  // Quote the first (now stale) nonce while subscribing to e2.
  vm.send({ type_url: EDS, response_nonce: first.nonce, resource_names_subscribe: ['e2'] });
  const third = await vm.next();
  t.deepEqual(names(third), ['e2']);
  t.not(third.nonce, second.nonce);
});

test('unsubscribing stops updates; resubscribing resends the resource', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  r.upstream.set(EDS, { e1: '1', e2: '2' });
  const vm = r.delta();
  vm.send({ node: vmNode(), type_url: EDS, resource_names_subscribe: ['e1', 'e2'] });
  const first = await vm.next();
  vm.send({ ...ack(first), resource_names_unsubscribe: ['e1'] });
  r.upstream.set(EDS, { e1: '1b', e2: '2' });
  t.true(await vm.quietFor(300), 'no update for an unsubscribed name');
  vm.send({ type_url: EDS, resource_names_subscribe: ['e1'] });
  const again = await vm.next();
  t.deepEqual(names(again), ['e1']);
});

test('on reconnect, initial_resource_versions means only what differs is sent, and what is gone is removed', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  r.upstream.set(CDS, { a: 'A', b: 'B', c: 'C' });
  const vm = r.delta();
  vm.send({ node: vmNode(), type_url: CDS });
  const first = await vm.next();
  const held = Object.fromEntries(first.resources.map((resource) => [resource.name, resource.version]));
  vm.close();
  r.upstream.set(CDS, { a: 'A', b: 'B-new', d: 'D' });
  const back = r.delta();
  back.send({ node: vmNode(), type_url: CDS, initial_resource_versions: held });
  const response = await back.next();
  t.deepEqual(names(response), ['b', 'd']);
  t.deepEqual(response.removed_resources, ['c']);
});

test('a reconnect holding everything current gets nothing but the empty initial answer', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  r.upstream.set(EDS, { e1: '1' });
  const vm = r.delta();
  vm.send({ node: vmNode(), type_url: EDS, resource_names_subscribe: ['e1'] });
  const first = await vm.next();
  vm.close();
  const back = r.delta();
  back.send({ node: vmNode(), type_url: EDS, resource_names_subscribe: ['e1'], initial_resource_versions: { e1: first.resources[0]!.version } });
  const quiet = await back.quietFor(300);
  t.true(quiet, JSON.stringify(back.responses));
});

test('a NACK is recorded; the rejected version is not resent; the next version is', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  r.upstream.set(CDS, { a: 'A' });
  const vm = r.delta();
  vm.send({ node: vmNode(), type_url: CDS });
  vm.send(ack(await vm.next()));
  r.upstream.set(CDS, { a: 'A-bad' });
  const bad = await vm.next();
  vm.send({ type_url: CDS, response_nonce: bad.nonce, error_detail: { code: 3, message: 'bad a' } });
  t.true(await vm.quietFor(300));
  const syncz = await (await fetch(`${r.relay.adminUrl}/debug/syncz`)).json() as Array<{ types: Record<string, { nacks: number; lastNack?: { message: string } }> }>;
  t.is(syncz[0]!.types.CDS!.lastNack!.message, 'bad a');
  r.upstream.set(CDS, { a: 'A-good' });
  const good = await vm.next();
  t.deepEqual(names(good), ['a']);
  t.not(good.resources[0]!.version, bad.resources[0]!.version);
});

test('a name that does not exist yet is remembered and sent when it appears', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  r.upstream.set(EDS, {});
  const vm = r.delta();
  vm.send({ node: vmNode(), type_url: EDS, resource_names_subscribe: ['later'] });
  t.true(await vm.quietFor(200));
  r.upstream.set(EDS, { later: 'L' });
  t.deepEqual(names(await vm.next()), ['later']);
});

test('explicit "*" subscribes to everything and unsubscribing "*" leaves only named resources', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  r.upstream.set(CDS, { a: 'A', b: 'B' });
  const vm = r.delta();
  vm.send({ node: vmNode(), type_url: CDS, resource_names_subscribe: ['*', 'a'] });
  const first = await vm.next();
  t.deepEqual(names(first), ['a', 'b']);
  vm.send({ ...ack(first), resource_names_unsubscribe: ['*'] });
  r.upstream.set(CDS, { a: 'A2', b: 'B2' });
  const second = await vm.next();
  t.deepEqual(names(second), ['a'], 'b is no longer subscribed');
});

test('an unknown type is passed through byte for byte with the upstream version', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  const customType = 'type.googleapis.com/example.custom.v1.Thing';
  r.upstream.set(customType, { x: Buffer.from([9, 8, 7]) });
  const vm = r.delta();
  vm.send({ node: vmNode(), type_url: customType, resource_names_subscribe: ['x'] });
  const response = await vm.next();
  const upstreamCopy = r.upstream.cache.get(customType, 'x')!;
  t.deepEqual(Buffer.from(response.resources[0]!.resource!.value), upstreamCopy.body);
  t.is(response.resources[0]!.resource!.type_url, customType);
  t.is(response.resources[0]!.version, upstreamCopy.version);
});

