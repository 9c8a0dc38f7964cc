import test from 'ava';
import fc from 'fast-check';
import { Envelopes, type DiscoveryRequest } from '../../src/xds/protocol/envelopes.js';
import { SotwRequestDecoder } from '../../src/xds/protocol/request-decoder.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';

/** The fields the sessions read, in a form deepEqual can compare. */
const fields = (request: DiscoveryRequest) => ({
  version_info: request.version_info,
  resource_names: [...request.resource_names],
  type_url: request.type_url,
  response_nonce: request.response_nonce,
  node: request.node ? { id: request.node.id, cluster: request.node.cluster } : null,
  error_detail: request.error_detail ? { code: request.error_detail.code, message: request.error_detail.message } : null,
});

const outcome = (decode: () => DiscoveryRequest) => {
  try {
    return { ok: fields(decode()) };
  } catch {
    return { error: true };
  }
};

const clusterNames = fc.array(fc.oneof(
  fc.integer({ min: 0, max: 999 }).map((i) => `outbound|80||svc-${i}.ns.svc.cluster.local`),
  fc.string({ maxLength: 200 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
), { maxLength: 300 });

const requests = fc.record({
  version_info: fc.string({ maxLength: 40 }),
  resource_names: clusterNames,
  type_url: fc.constantFrom(TypeUrl.endpoint, TypeUrl.route, ''),
  response_nonce: fc.string({ maxLength: 20 }),
  node: fc.option(fc.record({ id: fc.string({ maxLength: 30 }), cluster: fc.string({ maxLength: 10 }) }), { nil: undefined }),
  error_detail: fc.option(fc.record({ code: fc.integer({ min: 0, max: 16 }), message: fc.string({ maxLength: 30 }) }), { nil: undefined }),
}, { requiredKeys: ['version_info', 'resource_names', 'type_url', 'response_nonce'] });

test('decodes every DiscoveryRequest exactly as protobufjs does: ACKs with hundreds of names, unicode names, nodes, NACKs, lists seen before and lists that only share their start', (t) => {
  // One decoder for all runs, as one stream has: later runs meet the lists earlier ones left behind.
  const decoder = new SotwRequestDecoder();
  const seen: string[][] = [];
  fc.assert(fc.property(requests, fc.nat(), (request, pick) => {
    // Half the time the names are a list sent before, or that list with one name more or less.
    const earlier = seen.length > 0 && pick % 2 === 0 ? seen[pick % seen.length]! : undefined;
    const names = earlier ? [earlier, [...earlier, 'one-more'], earlier.slice(0, -1)][pick % 3]! : request.resource_names;
    seen.push(names);
    const bytes = Envelopes.encodeRequest({ ...request, resource_names: names });
    t.deepEqual(fields(decoder.decode(bytes)), fields(Envelopes.decodeRequest(bytes)));
  }), { numRuns: 500 });
});

test('an ACK repeating a list decodes to the very same (frozen) names array; another stream with the same list shares it', (t) => {
  const names = Array.from({ length: 300 }, (_, i) => `outbound|8000||svc-${i}.default.svc.cluster.local`);
  const ack = (nonce: string, list = names) => Envelopes.encodeRequest({ version_info: `v-${nonce}`, response_nonce: nonce, type_url: TypeUrl.endpoint, resource_names: list });
  const decoder = new SotwRequestDecoder();
  const first = decoder.decode(ack('1'));
  const second = decoder.decode(ack('2'));
  t.deepEqual(fields(second), fields(Envelopes.decodeRequest(ack('2'))));
  t.is(second.resource_names, first.resource_names, 'the same array: the session skips comparing the names again');
  t.true(Object.isFrozen(second.resource_names));
  t.is(new SotwRequestDecoder().decode(ack('3')).resource_names, first.resource_names, 'shared across streams');
  const changed = decoder.decode(ack('4', [...names.slice(0, 299), 'outbound|8000||other.default.svc.cluster.local']));
  t.not(changed.resource_names, first.resource_names);
  t.is(changed.resource_names.at(-1), 'outbound|8000||other.default.svc.cluster.local');
});

test('malformed bytes, cut messages and unknown fields are refused or read exactly as protobufjs refuses or reads them', (t) => {
  const decoder = new SotwRequestDecoder();
  const valid = Envelopes.encodeRequest({ version_info: 'v', type_url: TypeUrl.endpoint, response_nonce: 'n', resource_names: ['a', 'b', 'ü'] });
  decoder.decode(valid);
  for (let cut = 0; cut <= valid.length; cut++) {
    const bytes = valid.subarray(0, cut);
    t.deepEqual(outcome(() => decoder.decode(bytes)), outcome(() => Envelopes.decodeRequest(bytes)), `cut at ${cut}`);
  }
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (raw) => {
    const bytes = Buffer.from(raw);
    t.deepEqual(outcome(() => decoder.decode(bytes)), outcome(() => Envelopes.decodeRequest(bytes)));
  }), { numRuns: 2000 });
  // An unknown varint field (number 9) before the names: skipped by both.
  const unknown = Buffer.concat([Buffer.from([0x48, 0x05]), valid]);
  t.deepEqual(outcome(() => decoder.decode(unknown)), outcome(() => Envelopes.decodeRequest(unknown)));
});
