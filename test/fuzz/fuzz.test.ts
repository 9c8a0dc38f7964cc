import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import fc from 'fast-check';
import { Envelopes } from '../../src/xds/protocol/envelopes.js';
import { jsonToStruct, type JsonValue } from '../../src/xds/protocol/struct.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { AdsTestClient, vmNode } from '../helpers/ads-client.js';
import { createCertificate, createCertificateRaw, encodeCsrRequest, opensslCsr, opensslVerify } from '../helpers/ca-client.js';
import { caRig } from '../helpers/ca-rig.js';

/**
 * Property: whatever a client sends, the relay answers on that stream only — a response or a
 * gRPC status — never crashes, and a healthy VM on the same relay keeps getting its updates.
 */
const RUNS = Number(process.env.FUZZ_RUNS ?? 150);

const typeUrls = fc.oneof(fc.constantFrom(...Object.values(TypeUrl), 'type.googleapis.com/x.Y', ''), fc.string({ maxLength: 300 }));
const names = fc.array(fc.oneof(fc.string({ maxLength: 60 }), fc.constant('*')), { maxLength: 40 });
const json: fc.Arbitrary<JsonValue> = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, fc.string(), fc.double({ noNaN: true }), fc.boolean(), fc.constant(null),
    fc.array(tie('value'), { maxLength: 4 }), fc.dictionary(fc.string({ maxLength: 10 }), tie('value'), { maxKeys: 4 })),
})).value as fc.Arbitrary<JsonValue>;
const node = fc.record({
  id: fc.oneof(fc.string({ maxLength: 80 }), fc.constant('sidecar~10.0.0.1~a.b~b.svc.cluster.local')),
  metadata: fc.dictionary(fc.string({ maxLength: 20 }), json, { maxKeys: 8 }).map((m) => jsonToStruct(m)),
}, { requiredKeys: [] });

const sotwRequest = fc.record({
  node: fc.option(node, { nil: undefined }), type_url: typeUrls, resource_names: names,
  version_info: fc.string({ maxLength: 20 }), response_nonce: fc.string({ maxLength: 20 }),
  error_detail: fc.option(fc.record({ code: fc.integer({ min: 0, max: 20 }), message: fc.string({ maxLength: 50 }) }), { nil: undefined }),
}, { requiredKeys: [] });
const deltaRequest = fc.record({
  node: fc.option(node, { nil: undefined }), type_url: typeUrls,
  resource_names_subscribe: names, resource_names_unsubscribe: names,
  initial_resource_versions: fc.dictionary(fc.string({ maxLength: 30 }), fc.string({ maxLength: 10 }), { maxKeys: 10 }),
  response_nonce: fc.string({ maxLength: 20 }),
}, { requiredKeys: [] });

type Message = { kind: 'raw'; bytes: Uint8Array } | { kind: 'sotw'; request: object } | { kind: 'delta'; request: object };

const streams = fc.oneof(
  fc.array(fc.oneof(sotwRequest.map((request): Message => ({ kind: 'sotw', request })), fc.uint8Array({ maxLength: 200 }).map((bytes): Message => ({ kind: 'raw', bytes }))), { minLength: 1, maxLength: 5 }).map((messages) => ({ protocol: 'sotw' as const, messages })),
  fc.array(fc.oneof(deltaRequest.map((request): Message => ({ kind: 'delta', request })), fc.uint8Array({ maxLength: 200 }).map((bytes): Message => ({ kind: 'raw', bytes }))), { minLength: 1, maxLength: 5 }).map((messages) => ({ protocol: 'delta' as const, messages })),
);

test('fuzzed DiscoveryRequests, DeltaDiscoveryRequests and node metadata: no crash, other VMs unaffected', async (t) => {
  const r = await caRig();
  t.teardown(r.close);
  const healthy = new AdsTestClient(r.relay.target, 'delta');
  t.teardown(() => healthy.close());
  healthy.send({ node: vmNode({ name: 'healthy' }), type_url: TypeUrl.cluster });
  await healthy.next();
  let statuses = 0;
  await fc.assert(fc.asyncProperty(streams, async ({ protocol, messages }) => {
    const vm = new AdsTestClient(r.relay.target, protocol);
    for (const message of messages) {
      vm.sendRaw(message.kind === 'raw' ? Buffer.from(message.bytes)
        : message.kind === 'sotw' ? Envelopes.encodeRequest(message.request) : Envelopes.encodeDeltaRequest(message.request));
    }
    const ended = await Promise.race([vm.status.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 30))]);
    if (ended) statuses++;
    vm.close();
  }), { numRuns: RUNS });
  // The relay is still serving: a new VM and the healthy one both work.
  const fresh = new AdsTestClient(r.relay.target, 'sotw');
  t.teardown(() => fresh.close());
  fresh.send({ node: vmNode({ name: 'after-fuzz' }), type_url: TypeUrl.cluster });
  t.true((await fresh.next()).resources.length > 0);
  t.true(statuses > 0, 'some inputs were refused with a status');
  t.log(`${RUNS} fuzzed streams, ${statuses} ended with a gRPC status`);
});

test('fuzzed CSR requests: an error status or a valid chain, never a crash or a certificate for bad input', async (t) => {
  const r = await caRig();
  t.teardown(r.close);
  const good = opensslCsr('ec-p256').csr;
  const mutate = fc.oneof(
    fc.string({ maxLength: 400 }),
    fc.tuple(fc.nat({ max: good.length - 1 }), fc.string({ minLength: 1, maxLength: 3 })).map(([at, text]) => good.slice(0, at) + text + good.slice(at + text.length)),
    fc.uint8Array({ maxLength: 300 }).map((bytes) => `-----BEGIN CERTIFICATE REQUEST-----\n${Buffer.from(bytes).toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`),
  );
  let refused = 0;
  let issued = 0;
  await fc.assert(fc.asyncProperty(mutate, fc.integer({ min: -10, max: 1e9 }), async (csr, ttl) => {
    try {
      const chain = await createCertificate(r.client, csr, r.bearer(), ttl);
      issued++;
      if (!/OK/.test(opensslVerify(chain, r.rootFile))) throw new Error('issued an invalid chain');
    } catch (error) {
      if (!(error as grpc.ServiceError).code) throw error;
      refused++;
    }
  }), { numRuns: Math.ceil(RUNS / 2) });
  const raw = await createCertificateRaw(r.client, encodeCsrRequest(good), r.bearer());
  t.true(raw.length > 0, 'still signing afterwards');
  t.log(`${refused} refused, ${issued} issued (mutations that left a valid CSR)`);
  t.true(refused > 0);
});
