import test from 'ava';
import { MeshPatcher, applyMeshPatch } from '../../bench/xds/mesh-patch.js';
import { profileMesh } from '../../bench/xds/profiles.js';
import { changeOneEndpoint } from '../../bench/xds/mesh-changes.js';
import { renderMesh, type SimVariant } from '../../src/sim/config-generators.js';
import type { MeshModel } from '../../src/sim/mesh-model.js';
import type { ResourceUpdate } from '../../src/xds/cache/resource-cache.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';

const vm: SimVariant = { network: 'vm-net', generator: 'envoy' };

/** name → body, per type. */
const bytesOf = (rendered: Map<string, ResourceUpdate[]>) =>
  new Map([...rendered].map(([typeUrl, resources]) => [typeUrl, resources.map((r) => `${r.name}=${r.body.toString('base64')}`)]));

test('a render after a change is what a fresh render of the changed mesh gives, and re-encodes only the changed service', (t) => {
  const before = profileMesh('S');
  const first = renderMesh(before, vm);
  const after = changeOneEndpoint(before, 3);
  const incremental = renderMesh(after, vm);
  // structuredClone: the same mesh as new objects, so nothing rendered before is reused.
  t.deepEqual(bytesOf(incremental), bytesOf(renderMesh(structuredClone(after), vm)));
  const firstEds = first.get(TypeUrl.endpoint)!;
  const reEncoded = incremental.get(TypeUrl.endpoint)!.filter((resource, index) => resource !== firstEds[index]);
  t.is(reEncoded.length, after.services[3]!.ports.length, 'only the changed service\'s load assignments are new objects');
  t.false(reEncoded[0]!.body.equals(firstEds.find((r) => r.name === reEncoded[0]!.name)!.body));
});

test('a change to the mesh-wide part (a gateway address) re-renders every service', (t) => {
  const before = profileMesh('S');
  renderMesh(before, vm);
  const networks = structuredClone(before.networks);
  for (const spec of Object.values(networks)) for (const gateway of spec.gateways) gateway.address = '203.0.113.99';
  const moved: MeshModel = { ...before, networks };
  const rendered = renderMesh(moved, vm);
  t.deepEqual(bytesOf(rendered), bytesOf(renderMesh(structuredClone(moved), vm)));
  const eds = rendered.get(TypeUrl.endpoint)!.map((r) => r.body.toString('latin1')).join('');
  t.true(eds.includes('203.0.113.99'), 'the new gateway address is in the endpoints');
});

test('a mesh sent as patches arrives whole, with the services it did not change kept as the same objects', (t) => {
  const patcher = new MeshPatcher();
  let sent = profileMesh('S');
  const first = patcher.patch(sent);
  t.is(first.services.length, sent.services.length);
  // Through JSON, as IPC carries it.
  const overIpc = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;
  let received = applyMeshPatch(undefined, overIpc(first));
  t.deepEqual(received, sent);
  const kept = received.services[0];
  sent = changeOneEndpoint(sent, 5);
  const patch = patcher.patch(sent);
  t.deepEqual(patch.services.map(([index]) => index), [5]);
  received = applyMeshPatch(received, overIpc(patch));
  t.deepEqual(received, sent);
  t.is(received.services[0], kept);
  sent = { ...sent, services: sent.services.slice(0, 4) };
  received = applyMeshPatch(received, overIpc(patcher.patch(sent)));
  t.deepEqual(received, sent, 'a shorter mesh drops the services past its end');
  t.throws(() => applyMeshPatch(undefined, { rest: sent, serviceCount: 2, services: [[1, sent.services[1]!]] } as never), { message: /missing/ });
});
