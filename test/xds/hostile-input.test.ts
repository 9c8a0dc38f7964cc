import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { AdsMethod, Envelopes } from '../../src/xds/protocol/envelopes.js';
import { AdsTestClient } from '../helpers/ads-client.js';
import { rig, vmNode, type Rig } from '../helpers/setup.js';

const CDS = TypeUrl.cluster;

/** Sets up a healthy VM first, so each test can check that it is unaffected. */
async function withHealthyVm(t: { teardown(fn: () => unknown): void }) {
  const r = await rig();
  t.teardown(r.close);
  r.upstream.set(CDS, { a: 'A', b: 'B' });
  const healthy = r.delta();
  healthy.send({ node: vmNode({ name: 'healthy' }), type_url: CDS });
  const first = await healthy.next();
  healthy.send({ type_url: CDS, response_nonce: first.nonce });
  return { r, healthy };
}

async function stillServed(r: Rig, healthy: AdsTestClient<'delta'>, round: string) {
  r.upstream.set(CDS, { a: `A-${round}`, b: 'B' });
  const update = await healthy.next();
  const fresh = r.delta();
  fresh.send({ node: vmNode({ name: `fresh-${round}` }), type_url: CDS });
  const full = await fresh.next();
  return update.resources.length === 1 && full.resources.length === 2;
}

const cases: Array<{ name: string; code: grpc.status; send: (vm: AdsTestClient<'delta'>) => void }> = [
  { name: 'garbage bytes', code: grpc.status.INVALID_ARGUMENT, send: (vm) => vm.sendRaw(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01])) },
  { name: 'first request without node', code: grpc.status.INVALID_ARGUMENT, send: (vm) => vm.send({ type_url: CDS }) },
  { name: 'node without id', code: grpc.status.INVALID_ARGUMENT, send: (vm) => vm.send({ node: { id: '' }, type_url: CDS }) },
  { name: 'malformed type_url', code: grpc.status.INVALID_ARGUMENT, send: (vm) => vm.send({ node: vmNode(), type_url: 'not a type url' }) },
  { name: 'empty type_url', code: grpc.status.INVALID_ARGUMENT, send: (vm) => vm.send({ node: vmNode(), type_url: '' }) },
  {
    name: '10k names in one request', code: grpc.status.RESOURCE_EXHAUSTED,
    send: (vm) => vm.send({ node: vmNode(), type_url: TypeUrl.endpoint, resource_names_subscribe: Array.from({ length: 10_000 }, (_, i) => `cluster-${i}`) }),
  },
  {
    name: 'a message over the size limit', code: grpc.status.RESOURCE_EXHAUSTED,
    send: (vm) => vm.send({ node: vmNode(), type_url: TypeUrl.endpoint, resource_names_subscribe: ['x'.repeat(5 * 1024 * 1024)] }),
  },
];

for (const hostile of cases) {
  test(`${hostile.name}: ${grpc.status[hostile.code]} for that stream only`, async (t) => {
    const { r, healthy } = await withHealthyVm(t);
    const attacker = r.delta();
    hostile.send(attacker);
    const status = await attacker.status;
    t.is(status.code, hostile.code, status.details);
    t.truthy(status.details);
    t.true(await stillServed(r, healthy, 'after'), 'other VMs and the cache are unaffected');
  });
}

test('a compressed message is refused with UNIMPLEMENTED', async (t) => {
  const { r, healthy } = await withHealthyVm(t);
  const session = http2.connect(`http://${r.relay.target}`);
  t.teardown(() => session.destroy());
  const stream = session.request({ ':method': 'POST', ':path': AdsMethod.delta, 'content-type': 'application/grpc', 'grpc-encoding': 'gzip', te: 'trailers' });
  const body = Envelopes.encodeDeltaRequest({ node: vmNode(), type_url: CDS });
  const frame = Buffer.alloc(5 + body.length);
  frame[0] = 1;
  frame.writeUInt32BE(body.length, 1);
  body.copy(frame, 5);
  stream.end(frame);
  const trailers = await new Promise<http2.IncomingHttpHeaders>((resolve) => {
    stream.on('response', (headers) => { if (headers['grpc-status']) resolve(headers); });
    stream.on('trailers', resolve);
    stream.resume();
  });
  t.is(Number(trailers['grpc-status']), grpc.status.UNIMPLEMENTED);
  t.true(await stillServed(r, healthy, 'after-gzip'));
});

test('an unknown method is UNIMPLEMENTED', async (t) => {
  const { r } = await withHealthyVm(t);
  const client = new grpc.Client(r.relay.target, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  const error = await new Promise<grpc.ServiceError>((resolve) => {
    client.makeUnaryRequest('/no.such.Service/Method', (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), (err) => resolve(err!));
  });
  t.is(error.code, grpc.status.UNIMPLEMENTED);
});

test('a request for too many types on one stream is RESOURCE_EXHAUSTED', async (t) => {
  const { r, healthy } = await withHealthyVm(t);
  const attacker = r.sotw();
  attacker.send({ node: vmNode(), type_url: 'type.googleapis.com/x.T0', resource_names: ['n'] });
  for (let i = 1; i <= 70; i++) attacker.send({ type_url: `type.googleapis.com/x.T${i}`, resource_names: ['n'] });
  t.is((await attacker.status).code, grpc.status.RESOURCE_EXHAUSTED);
  t.true(await stillServed(r, healthy, 'after-types'));
});
