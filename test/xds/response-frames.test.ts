import { randomBytes } from 'node:crypto';
import test from 'ava';
import { MessageDeframer, frameMessage } from '../../src/transport/grpc-framing.js';
import { Envelopes } from '../../src/xds/protocol/envelopes.js';
import { frameDeltaResponse, frameSotwResponse, type ResourceBytes } from '../../src/xds/protocol/response-frames.js';

const EDS = 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment';

/** Bodies on both sides of each varint length boundary (1, 2, 3 and 4 bytes of length). */
const bodySizes = [0, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152];
const resources: ResourceBytes[] = bodySizes.map((size, index) => ({
  name: index === 3 ? 'outbound|80||ünïcode-ß.default.svc.cluster.local' : `outbound|80||svc-${index}.default.svc.cluster.local`,
  version: `v${index}`,
  typeUrl: EDS,
  body: randomBytes(size),
}));

function unframe(frame: Buffer): Buffer {
  const messages = new MessageDeframer(64 * 1024 * 1024).push(frame);
  if (messages.length !== 1) throw new Error(`expected one message, got ${messages.length}`);
  return messages[0]!;
}

test('a SotW response frame is byte for byte what protobufjs encodes, and decodes to the same resources', (t) => {
  const frame = frameSotwResponse({ versionInfo: '2026-12-01T00:00:00Z/7', typeUrl: EDS, nonce: 'n-1', resources });
  const expected = frameMessage(Envelopes.encodeResponse({
    version_info: '2026-12-01T00:00:00Z/7', type_url: EDS, nonce: 'n-1',
    resources: resources.map((resource) => ({ type_url: resource.typeUrl, value: resource.body })),
  }));
  t.true(frame.equals(expected));
  const decoded = Envelopes.decodeResponse(unframe(frame));
  t.is(decoded.resources.length, resources.length);
  decoded.resources.forEach((any, index) => t.true(Buffer.from(any.value).equals(resources[index]!.body)));
});

test('a Delta response frame is byte for byte what protobufjs encodes, names, versions and removals included', (t) => {
  const fields = { systemVersionInfo: 'sys-3', typeUrl: EDS, nonce: 'n-2', resources, removedResources: ['gone-a', 'gône-b'] };
  const frame = frameDeltaResponse(fields);
  const expected = frameMessage(Envelopes.encodeDeltaResponse({
    system_version_info: 'sys-3', type_url: EDS, nonce: 'n-2', removed_resources: fields.removedResources,
    resources: resources.map((resource) => ({ name: resource.name, version: resource.version, resource: { type_url: resource.typeUrl, value: resource.body } })),
  }));
  t.true(frame.equals(expected));
  const decoded = Envelopes.decodeDeltaResponse(unframe(frame));
  t.deepEqual(decoded.resources.map((resource) => [resource.name, resource.version]), resources.map((resource) => [resource.name, resource.version]));
  t.deepEqual(decoded.removed_resources, ['gone-a', 'gône-b']);
  decoded.resources.forEach((resource, index) => t.true(Buffer.from(resource.resource!.value).equals(resources[index]!.body)));
});

test('empty singular strings are left out (proto3 defaults) and an empty response is a valid frame', (t) => {
  const frame = frameDeltaResponse({ systemVersionInfo: '', typeUrl: EDS, nonce: 'n-3', resources: [], removedResources: [''] });
  const decoded = Envelopes.decodeDeltaResponse(unframe(frame));
  t.is(decoded.system_version_info, '');
  t.deepEqual(decoded.resources, []);
  // A repeated element is kept even when empty: it is still a name.
  t.deepEqual(decoded.removed_resources, ['']);
  const unversioned = frameSotwResponse({ versionInfo: '', typeUrl: EDS, nonce: '', resources: [{ ...resources[1]!, typeUrl: '' }] });
  const sotw = Envelopes.decodeResponse(unframe(unversioned));
  t.is(sotw.nonce, '');
  t.is(sotw.resources[0]!.type_url, '');
  t.true(Buffer.from(sotw.resources[0]!.value).equals(resources[1]!.body));
});
