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

/** A raw HTTP/2 ADS stream, for what a gRPC client would never send. */
function rawStream(target: string) {
  const session = http2.connect(`http://${target}`);
  const stream = session.request({ ':method': 'POST', ':path': AdsMethod.delta, 'content-type': 'application/grpc', te: 'trailers' });
  const status = new Promise<{ code: number; message: string }>((resolve) => {
    const done = (headers: http2.IncomingHttpHeaders) => {
      if (headers['grpc-status'] !== undefined) resolve({ code: Number(headers['grpc-status']), message: decodeURIComponent(String(headers['grpc-message'] ?? '')) });
    };
    stream.on('response', done);
    stream.on('trailers', done);
    stream.on('error', () => {});
    stream.resume();
  });
  return { session, stream, status };
}

/** The gRPC header of a message declaring `length` bytes. */
const declared = (length: number) => {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(length, 1);
  return header;
};

test('partly sent messages share one budget across streams: past it the stream holding the most is RESOURCE_EXHAUSTED, others are served', async (t) => {
  const r = await rig({ maxBufferedMb: 1 });
  t.teardown(r.close);
  r.upstream.set(CDS, { a: 'A', b: 'B' });
  const sentKiB = [500, 300, 400];
  const holders = sentKiB.map(() => rawStream(r.relay.target));
  t.teardown(() => { for (const h of holders) h.session.destroy(); });
  // Each declares a 1 MiB message and sends part of it: the third passes the 1 MiB budget, and the
  // first, holding the most, is the one ended.
  for (const [index, holder] of holders.entries()) {
    holder.stream.write(declared(1024 * 1024));
    holder.stream.write(Buffer.alloc(sentKiB[index]! * 1024));
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const refused = await holders[0]!.status;
  t.is(refused.code, grpc.status.RESOURCE_EXHAUSTED, refused.message);
  t.regex(refused.message, /buffer budget/);
  const stillOpen = await Promise.race([holders[2]!.status.then(() => false), new Promise((resolve) => setTimeout(() => resolve(true), 300))]);
  t.true(stillOpen, 'the stream that crossed the budget, holding less, is kept');
  const healthy = r.delta();
  healthy.send({ node: vmNode({ name: 'healthy' }), type_url: CDS });
  t.is((await healthy.next()).resources.length, 2, 'a VM sending whole messages is served');
});

test('a message begun but never finished is ended after the partial-message timeout', async (t) => {
  const r = await rig({ partialMessageTimeoutSeconds: 0.5 });
  t.teardown(r.close);
  const slow = rawStream(r.relay.target);
  t.teardown(() => slow.session.destroy());
  slow.stream.write(declared(1000));
  slow.stream.write(Buffer.alloc(900));
  const status = await slow.status;
  t.is(status.code, grpc.status.DEADLINE_EXCEEDED, status.message);
});

test('a stream half-closed in the middle of a message, or before any request, is answered INVALID_ARGUMENT instead of left open', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  const truncated = rawStream(r.relay.target);
  const empty = rawStream(r.relay.target);
  t.teardown(() => { truncated.session.destroy(); empty.session.destroy(); });
  truncated.stream.end(Buffer.concat([declared(100), Buffer.alloc(10)]));
  empty.stream.end();
  const [a, b] = await Promise.all([truncated.status, empty.status]);
  t.is(a.code, grpc.status.INVALID_ARGUMENT);
  t.regex(a.message, /middle of a message/);
  t.is(b.code, grpc.status.INVALID_ARGUMENT);
  t.regex(b.message, /without sending a request/);
});
