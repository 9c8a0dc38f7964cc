import test from 'ava';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { resourceName } from '../../src/xds/protocol/resource-name.js';
import type { DiscoveryResponse } from '../../src/xds/protocol/envelopes.js';
import { eventually } from '../helpers/harness.js';
import { rig, vmNode } from '../helpers/setup.js';

const CDS = TypeUrl.cluster;
const EDS = TypeUrl.endpoint;

function names(response: DiscoveryResponse): string[] {
  return response.resources.map((any) => resourceName(any.type_url, any.value)).sort();
}

function ack(response: DiscoveryResponse, resourceNames: string[] = []) {
  return { type_url: response.type_url, version_info: response.version_info, response_nonce: response.nonce, resource_names: resourceNames };
}

for (const upstreamProtocol of ['delta', 'sotw'] as const) {
  test(`[upstream ${upstreamProtocol}] wildcard CDS is answered with the full set, and an ACK gets no resend`, async (t) => {
    const r = await rig({ upstreamProtocol });
    t.teardown(r.close);
    r.upstream.set(CDS, { a: 'A', b: 'B', c: 'C' });
    const vm = r.sotw();
    vm.send({ node: vmNode(), type_url: CDS, resource_names: [] });
    const first = await vm.next();
    t.deepEqual(names(first), ['a', 'b', 'c']);
    t.truthy(first.nonce);
    vm.send(ack(first));
    t.true(await vm.quietFor(300), 'an ACK must not be answered');
  });

  test(`[upstream ${upstreamProtocol}] a change to CDS sends the full set again with a new version and nonce`, async (t) => {
    const r = await rig({ upstreamProtocol });
    t.teardown(r.close);
    r.upstream.set(CDS, { a: 'A', b: 'B' });
    const vm = r.sotw();
    vm.send({ node: vmNode(), type_url: CDS });
    const first = await vm.next();
    vm.send(ack(first));
    r.upstream.set(CDS, { a: 'A', c: 'C' });
    const second = await vm.next();
    t.deepEqual(names(second), ['a', 'c'], 'absence of b in a CDS response means deletion');
    t.not(second.version_info, first.version_info);
    t.not(second.nonce, first.nonce);
  });
}

test('a request carrying a stale nonce gets no response', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  r.upstream.set(EDS, { e1: '1', e2: '2' });
  const vm = r.sotw();
  vm.send({ node: vmNode(), type_url: EDS, resource_names: ['e1'] });
  const first = await vm.next();
  vm.send(ack(first, ['e1']));
  r.upstream.set(EDS, { e1: '1-changed', e2: '2' });
  const second = await vm.next();
  t.deepEqual(names(second), ['e1']);
  // The client now asks for e2 but quotes the first nonce: stale, so the server stays silent.
  vm.send({ ...ack(first, ['e1', 'e2']) });
  t.true(await vm.quietFor(300));
  // The same request with the current nonce is answered.
  vm.send(ack(second, ['e1', 'e2']));
  const third = await vm.next();
  t.deepEqual(names(third), ['e2']);
});

test('a NACK is recorded and not answered with the same resources; the next change is sent', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  r.upstream.set(CDS, { a: 'A' });
  const vm = r.sotw();
  vm.send({ node: vmNode(), type_url: CDS });
  const first = await vm.next();
  vm.send(ack(first));
  r.upstream.set(CDS, { a: 'A-bad' });
  const bad = await vm.next();
  vm.send({ type_url: CDS, version_info: first.version_info, response_nonce: bad.nonce, error_detail: { code: 3, message: 'cluster a: invalid' } });
  t.true(await vm.quietFor(300), 'the rejected config must not be resent');
  const syncz = await (await fetch(`${r.relay.adminUrl}/debug/syncz`)).json() as Array<{ types: Record<string, { nacks: number; lastNack?: { message: string }; versionAcked: string }> }>;
  t.is(syncz[0]!.types.CDS!.nacks, 1);
  t.is(syncz[0]!.types.CDS!.lastNack!.message, 'cluster a: invalid');
  t.is(syncz[0]!.types.CDS!.versionAcked, first.version_info, 'the last good version stays the acked one');
  r.upstream.set(CDS, { a: 'A-fixed' });
  const fixed = await vm.next();
  t.deepEqual(names(fixed), ['a']);
  t.not(fixed.version_info, bad.version_info);
});

test('a changed name set is answered, and newly requested names are resent even if sent before', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  r.upstream.set(EDS, { e1: '1', e2: '2' });
  const vm = r.sotw();
  vm.send({ node: vmNode(), type_url: EDS, resource_names: ['e1'] });
  let response = await vm.next();
  t.deepEqual(names(response), ['e1']);
  vm.send(ack(response, ['e1', 'e2']));
  response = await vm.next();
  t.deepEqual(names(response), ['e2'], 'only the newly requested name; EDS responses may be partial');
  vm.send(ack(response, ['e2']));
  t.true(await vm.quietFor(200), 'dropping a name needs no EDS response');
  vm.send(ack(response, ['e1', 'e2']));
  response = await vm.next();
  t.deepEqual(names(response), ['e1'], 'e1 was sent before but is newly requested again');
});

test('a requested name that does not exist yet is remembered and sent when it appears', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  r.upstream.set(EDS, { e1: '1' });
  const vm = r.sotw();
  vm.send({ node: vmNode(), type_url: EDS, resource_names: ['e1', 'later'] });
  const first = await vm.next();
  t.deepEqual(names(first), ['e1']);
  vm.send(ack(first, ['e1', 'later']));
  t.true(await vm.quietFor(200));
  r.upstream.set(EDS, { e1: '1', later: 'L' });
  const second = await vm.next();
  t.deepEqual(names(second), ['later']);
});

test('legacy wildcard: an empty list is wildcard only until the client names a resource; "*" is explicit', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  r.upstream.set(CDS, { a: 'A', b: 'B' });
  const vm = r.sotw();
  vm.send({ node: vmNode(), type_url: CDS, resource_names: [] });
  let response = await vm.next();
  t.deepEqual(names(response), ['a', 'b']);
  vm.send(ack(response, ['a']));
  response = await vm.next();
  t.deepEqual(names(response), ['a'], 'naming a resource ends the legacy wildcard');
  vm.send(ack(response, []));
  response = await vm.next();
  t.deepEqual(names(response), [], 'after naming, an empty list means nothing, not everything');
  vm.send(ack(response, ['*']));
  response = await vm.next();
  t.deepEqual(names(response), ['a', 'b'], 'explicit * is a wildcard');
});

test('a partial EDS update sends only the changed assignment', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  r.upstream.set(EDS, { e1: '1', e2: '2', e3: '3' });
  const vm = r.sotw();
  vm.send({ node: vmNode(), type_url: EDS, resource_names: ['e1', 'e2', 'e3'] });
  const first = await vm.next();
  t.deepEqual(names(first), ['e1', 'e2', 'e3']);
  vm.send(ack(first, ['e1', 'e2', 'e3']));
  r.upstream.set(EDS, { e1: '1', e2: '2-changed', e3: '3' });
  const second = await vm.next();
  t.deepEqual(names(second), ['e2']);
});

test('an unknown but well-formed type is passed through byte for byte', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  const customType = 'type.googleapis.com/example.custom.v1.Thing';
  r.upstream.set(customType, { thing: Buffer.from([0, 1, 2, 250, 255]) });
  const vm = r.sotw();
  vm.send({ node: vmNode(), type_url: customType, resource_names: ['thing'] });
  const response = await vm.next();
  t.is(response.type_url, customType);
  t.is(response.resources[0]!.type_url, customType);
  t.deepEqual(Buffer.from(response.resources[0]!.value), r.upstream.cache.get(customType, 'thing')!.body);
});

test('initial push follows CDS, EDS, LDS, RDS order even when the client asks in reverse', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  r.upstream.set(CDS, { c: 'C' });
  r.upstream.set(EDS, { c: 'E' });
  r.upstream.set(TypeUrl.listener, { l: 'L' });
  r.upstream.set(TypeUrl.route, { rt: 'R' });
  // A cold group: nothing cached yet, the relay subscribes upstream in the client's order.
  const vm = r.sotw();
  vm.send({ node: vmNode(), type_url: TypeUrl.route, resource_names: ['rt'] });
  vm.send({ type_url: TypeUrl.listener });
  vm.send({ type_url: EDS, resource_names: ['c'] });
  vm.send({ type_url: CDS });
  const responses = [];
  for (let i = 0; i < 4; i++) responses.push(await vm.next());
  t.deepEqual(responses.map((response) => response.type_url), [CDS, EDS, TypeUrl.listener, TypeUrl.route]);

  // An update touching all four types reaches the VM in the same order.
  for (const response of responses) vm.send(ack(response, response.type_url === CDS || response.type_url === TypeUrl.listener ? [] : names(response)));
  await vm.quietFor(100);
  r.upstream.set(TypeUrl.route, { rt: 'R2' });
  r.upstream.set(TypeUrl.listener, { l: 'L2' });
  r.upstream.set(EDS, { c: 'E2' });
  r.upstream.set(CDS, { c: 'C2' });
  const updates = [];
  for (let i = 0; i < 4; i++) updates.push((await vm.next()).type_url);
  t.deepEqual(updates, [CDS, EDS, TypeUrl.listener, TypeUrl.route]);
});

test('serialize once: VMs of one group get identical bytes and the same nonce for the same push', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  r.upstream.set(CDS, { a: 'A', b: 'B' });
  const vms = Array.from({ length: 5 }, () => r.sotw());
  for (const vm of vms) vm.send({ node: vmNode(), type_url: CDS });
  const firsts = await Promise.all(vms.map((vm) => vm.next()));
  for (let i = 0; i < vms.length; i++) vms[i]!.send(ack(firsts[i]!));
  r.upstream.set(CDS, { a: 'A2', b: 'B' });
  const seconds = await Promise.all(vms.map((vm) => vm.next()));
  t.is(new Set(seconds.map((s) => s.nonce)).size, 1);
  const groups = await eventually(async () => (await fetch(`${r.relay.adminUrl}/debug/groups`)).json() as Promise<Array<{ fanout: { serializations: number; reuses: number } }>>, (g) => g.length === 1);
  t.true(groups[0]!.fanout.reuses >= 4, `reuses ${groups[0]!.fanout.reuses}`);
});
