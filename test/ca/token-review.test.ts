import http from 'node:http';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { createCertificate, opensslCsr, opensslVerify } from '../helpers/ca-client.js';
import { caRig } from '../helpers/ca-rig.js';

/**
 * Stands in for the API server's TokenReview endpoint (the Kubernetes issue brings the real
 * kube-apiserver): answers like it for two known tokens and records what it was asked.
 */
async function tokenReviewEndpoint() {
  const reviews: Array<{ spec: { token: string; audiences: string[] } }> = [];
  const server = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => { body += chunk; });
    request.on('end', () => {
      if (request.method !== 'POST' || request.url !== '/apis/authentication.k8s.io/v1/tokenreviews') {
        response.writeHead(404).end();
        return;
      }
      const review = JSON.parse(body) as { spec: { token: string; audiences: string[] } };
      reviews.push(review);
      const status = review.spec.token === 'good-token'
        ? { authenticated: true, user: { username: 'system:serviceaccount:vm:vm-sa' }, audiences: ['istio-ca'] }
        : review.spec.token === 'user-token'
          ? { authenticated: true, user: { username: 'alice' }, audiences: ['istio-ca'] }
          : { authenticated: false, error: 'invalid bearer token' };
      response.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: review.spec, status }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const kubeconfig = path.join(mkdtempSync(path.join(tmpdir(), 'kubeconfig-')), 'config');
  writeFileSync(kubeconfig, `apiVersion: v1
kind: Config
clusters: [{ name: test, cluster: { server: "http://127.0.0.1:${port}", insecure-skip-tls-verify: true } }]
users: [{ name: relay, user: { token: relay-sa-token } }]
contexts: [{ name: test, context: { cluster: test, user: relay } }]
current-context: test
`);
  return { reviews, kubeconfig, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

test('with TokenReview configured, the API server decides: accepted token → its service account; refused → UNAUTHENTICATED', async (t) => {
  const api = await tokenReviewEndpoint();
  t.teardown(api.close);
  const r = await caRig('ec-p256', { tokenReview: true, kubeconfig: api.kubeconfig });
  t.teardown(r.close);
  const chain = await createCertificate(r.client, opensslCsr('rsa-2048').csr, { authorization: 'Bearer good-token' });
  t.is(new X509Certificate(chain[0]!).subjectAltName, 'URI:spiffe://cluster.local/ns/vm/sa/vm-sa');
  t.regex(opensslVerify(chain, r.rootFile), /OK/);
  t.deepEqual(api.reviews[0]!.spec, { token: 'good-token', audiences: ['istio-ca'] }, 'the review asks for the istio-ca audience');
  for (const [token, message] of [['forged', /did not authenticate/], ['user-token', /not a service account/]] as const) {
    const error = await createCertificate(r.client, opensslCsr('ec-p256').csr, { authorization: `Bearer ${token}` }).then(() => undefined, (e: grpc.ServiceError) => e);
    t.is(error?.code, grpc.status.UNAUTHENTICATED);
    t.regex(error!.details, message);
  }
});

test('with TokenReview configured but the API server unreachable, CSRs get UNAVAILABLE (agents retry)', async (t) => {
  const api = await tokenReviewEndpoint();
  await api.close();
  const r = await caRig('ec-p256', { tokenReview: true, kubeconfig: api.kubeconfig });
  t.teardown(r.close);
  const error = await createCertificate(r.client, opensslCsr('ec-p256').csr, { authorization: 'Bearer good-token' }).then(() => undefined, (e: grpc.ServiceError) => e);
  t.is(error?.code, grpc.status.UNAVAILABLE);
});
