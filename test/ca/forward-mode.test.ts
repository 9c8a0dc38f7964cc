import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { formatAddress } from '../../src/transport/listen-address.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { AdsTestClient, vmNode } from '../helpers/ads-client.js';
import { createCertificatePath, createCertificateRaw, encodeCsrRequest, opensslCsr } from '../helpers/ca-client.js';
import { startRelay, startSim } from '../helpers/harness.js';
import { makeTestPki } from '../helpers/openssl-certs.js';

interface Recorded {
  metadata: Record<string, string>;
  request: Buffer;
}

/** An upstream CA standing in for istiod: records what it was sent and answers as told. */
async function recordingCa(answer: (call: Recorded) => { response?: Buffer; error?: { code: grpc.status; details: string } }, delayMs = 0, port = 0) {
  const recorded: Recorded[] = [];
  const server = new grpc.Server();
  const identity = (b: Buffer) => b;
  server.addService({
    CreateCertificate: { path: createCertificatePath, requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
  }, {
    CreateCertificate: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      const entry = { metadata: Object.fromEntries(Object.entries(call.metadata.getMap()).map(([k, v]) => [k, String(v)])), request: call.request };
      recorded.push(entry);
      const { response, error } = answer(entry);
      setTimeout(() => (error ? callback({ code: error.code, details: error.details } as grpc.ServiceError) : callback(null, response!)), delayMs);
    },
  });
  const bound = await new Promise<number>((resolve, reject) => server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  return { recorded, target: `127.0.0.1:${bound}`, port: bound, close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())) };
}

const cannedResponse = Buffer.from('0a0a6c6561662d70656d0a0a0a726f6f742d70656d', 'hex');

async function forwardRig(t: { teardown(fn: () => unknown): void }, caTarget: string, overrides = {}) {
  const sim = await startSim();
  const relay = await startRelay({ upstream: sim.target, caMode: 'forward', caUpstream: caTarget, caUpstreamPlaintext: true, ...overrides });
  const client = new grpc.Client(relay.target, grpc.credentials.createInsecure());
  t.teardown(async () => {
    client.close();
    await relay.stop();
    await sim.close();
  });
  return { relay, client };
}

test('forward mode passes the VM\'s bearer token and ClusterID to istiod and returns its answer unchanged', async (t) => {
  const ca = await recordingCa(() => ({ response: cannedResponse }));
  t.teardown(ca.close);
  const { client } = await forwardRig(t, ca.target);
  const request = encodeCsrRequest(opensslCsr('ec-p256').csr, 3600);
  const response = await createCertificateRaw(client, request, { authorization: 'Bearer vm-token', clusterid: 'cluster1' });
  t.deepEqual(response, cannedResponse);
  t.is(ca.recorded.length, 1);
  t.is(ca.recorded[0]!.metadata.authorization, 'Bearer vm-token');
  t.is(ca.recorded[0]!.metadata.clusterid, 'cluster1');
  t.deepEqual(ca.recorded[0]!.request, request, 'the request reaches istiod byte for byte');
  t.false('x-forwarded-client-cert' in ca.recorded[0]!.metadata);
});

test('forward mode: a VM with a verified client certificate is vouched for with x-forwarded-client-cert', async (t) => {
  const pki = makeTestPki();
  const ca = await recordingCa(() => ({ response: cannedResponse }));
  t.teardown(ca.close);
  const { relay } = await forwardRig(t, ca.target, { tlsListen: '127.0.0.1:0', tlsCertFile: pki.serverCert, tlsKeyFile: pki.serverKey, tlsClientCaFile: pki.caCert });
  const client = new grpc.Client(formatAddress(relay.addresses.tls!), grpc.credentials.createSsl(pki.read(pki.caCert), pki.read(pki.clientKey), pki.read(pki.clientCert)),
    { 'grpc.ssl_target_name_override': 'istiod.istio-system.svc' });
  t.teardown(() => client.close());
  await createCertificateRaw(client, encodeCsrRequest(opensslCsr('ec-p256').csr));
  const xfcc = ca.recorded[0]!.metadata['x-forwarded-client-cert']!;
  t.regex(xfcc, /^Hash=[0-9a-f]{64};Subject="";URI=spiffe:\/\/cluster\.local\/ns\/vm\/sa\/vm-sa$/);
  t.false('authorization' in ca.recorded[0]!.metadata);
});

test('forward mode: istiod\'s refusal reaches the VM with its status', async (t) => {
  const ca = await recordingCa(() => ({ error: { code: grpc.status.UNAUTHENTICATED, details: 'token expired' } }));
  t.teardown(ca.close);
  const { client } = await forwardRig(t, ca.target);
  const error = await createCertificateRaw(client, encodeCsrRequest(opensslCsr('ec-p256').csr), { authorization: 'Bearer x' }).then(() => undefined, (e: grpc.ServiceError) => e);
  t.is(error?.code, grpc.status.UNAUTHENTICATED);
  t.regex(error!.details, /token expired/);
});

test('forward mode: no credentials is refused at the relay without troubling istiod', async (t) => {
  const ca = await recordingCa(() => ({ response: cannedResponse }));
  t.teardown(ca.close);
  const { client } = await forwardRig(t, ca.target);
  const error = await createCertificateRaw(client, encodeCsrRequest(opensslCsr('ec-p256').csr)).then(() => undefined, (e: grpc.ServiceError) => e);
  t.is(error?.code, grpc.status.UNAUTHENTICATED);
  t.is(ca.recorded.length, 0);
});

test('forward mode: istiod unavailable at first is retried with backoff within the deadline', async (t) => {
  const placeholder = await recordingCa(() => ({ response: cannedResponse }));
  const port = placeholder.port;
  await placeholder.close();
  const { client } = await forwardRig(t, `127.0.0.1:${port}`, { caRequestTimeoutSeconds: 10 });
  const pending = createCertificateRaw(client, encodeCsrRequest(opensslCsr('ec-p256').csr), { authorization: 'Bearer x' });
  await new Promise((resolve) => setTimeout(resolve, 500));
  const ca = await recordingCa(() => ({ response: cannedResponse }), 0, port);
  t.teardown(ca.close);
  t.deepEqual(await pending, cannedResponse);
});

test('forward mode: a CSR storm beyond the queue gets RESOURCE_EXHAUSTED; queued ones all complete', async (t) => {
  const ca = await recordingCa(() => ({ response: cannedResponse }), 300);
  t.teardown(ca.close);
  const { client } = await forwardRig(t, ca.target, { caMaxConcurrent: 2, caMaxQueued: 3 });
  const request = encodeCsrRequest(opensslCsr('ec-p256').csr);
  const results = await Promise.all(Array.from({ length: 8 }, () => createCertificateRaw(client, request, { authorization: 'Bearer x' })
    .then(() => 'ok', (e: grpc.ServiceError) => grpc.status[e.code])));
  t.is(results.filter((r) => r === 'ok').length, 5, results.join(','));
  t.is(results.filter((r) => r === 'RESOURCE_EXHAUSTED').length, 3);
  t.is(ca.recorded.length, 5);
});

test('graceful stop: not ready first, ADS streams told UNAVAILABLE, an in-flight CSR still answered', async (t) => {
  const ca = await recordingCa(() => ({ response: cannedResponse }), 800);
  t.teardown(ca.close);
  const sim = await startSim();
  const relay = await startRelay({ upstream: sim.target, caMode: 'forward', caUpstream: ca.target, caUpstreamPlaintext: true, readinessDrainSeconds: 0.3 });
  const client = new grpc.Client(relay.target, grpc.credentials.createInsecure());
  const vm = new AdsTestClient(relay.target, 'delta');
  t.teardown(async () => {
    vm.close();
    client.close();
    await sim.close();
  });
  vm.send({ node: vmNode(), type_url: TypeUrl.cluster });
  await vm.next();
  const csr = createCertificateRaw(client, encodeCsrRequest(opensslCsr('ec-p256').csr), { authorization: 'Bearer x' });
  await new Promise((resolve) => setTimeout(resolve, 100));
  const adminUrl = relay.adminUrl;
  const stopping = relay.stop(5000);
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.is((await fetch(`${adminUrl}/readyz`)).status, 503, 'not ready while draining');
  t.is((await vm.status).code, grpc.status.UNAVAILABLE);
  t.deepEqual(await csr, cannedResponse, 'the CSR in flight was answered');
  await stopping;
});
