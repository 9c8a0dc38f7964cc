import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DEV_ISSUER, ensureDevTokenIssuer } from '../../src/ca/dev-token-issuer.js';
import { mintJwt } from '../../src/ca/jwt.js';
import { formatAddress } from '../../src/transport/listen-address.js';
import { createCertificate, opensslCsr, opensslVerify } from '../helpers/ca-client.js';
import { caRig, type CaRig } from '../helpers/ca-rig.js';

const now = () => Math.floor(Date.now() / 1000);
const claims = (overrides: Record<string, unknown> = {}) => ({
  iss: DEV_ISSUER, sub: 'system:serviceaccount:vm:vm-sa', aud: ['istio-ca'], iat: now(), exp: now() + 600,
  'kubernetes.io': { namespace: 'vm', serviceaccount: { name: 'vm-sa' } }, ...overrides,
});

async function refusal(r: CaRig, headers: Record<string, string>) {
  const error = await createCertificate(r.client, opensslCsr('ec-p256').csr, headers).then(() => undefined, (e: grpc.ServiceError) => e);
  return error;
}

const jwtCases: Array<[string, (r: CaRig) => string, RegExp]> = [
  ['expired', (r) => mintJwt(claims({ exp: now() - 3600 }), r.issuer.key, r.issuer.kid), /expired/],
  ['wrong audience', (r) => mintJwt(claims({ aud: ['kubernetes'] }), r.issuer.key, r.issuer.kid), /audience/],
  ['wrong issuer', (r) => mintJwt(claims({ iss: 'https://evil.example' }), r.issuer.key, r.issuer.kid), /issuer/],
  ['signed by an untrusted key', () => {
    const other = ensureDevTokenIssuer(mkdtempSync(path.join(tmpdir(), 'other-issuer-')));
    return mintJwt(claims(), other.key, other.kid);
  }, /signature/],
  ['not a JWT', () => 'not-a-jwt', /not a JWT/],
  ['no service account', (r) => mintJwt(claims({ sub: 'someone', 'kubernetes.io': undefined }), r.issuer.key, r.issuer.kid), /service account/],
  // A trusted issuer's token whose names would build another SPIFFE path (…/ns/other/sa/admin/sa/x).
  ['a namespace Kubernetes would not allow', (r) => mintJwt(claims({ 'kubernetes.io': { namespace: 'other/sa/admin', serviceaccount: { name: 'x' } } }), r.issuer.key, r.issuer.kid), /not a Kubernetes namespace name/],
  ['a service account name Kubernetes would not allow', (r) => mintJwt(claims({ sub: 'system:serviceaccount:vm:Admin/x', 'kubernetes.io': undefined }), r.issuer.key, r.issuer.kid), /not a Kubernetes service account name/],
];

for (const [name, token, message] of jwtCases) {
  test(`offline JWT ${name}: UNAUTHENTICATED, no certificate`, async (t) => {
    const r = await caRig();
    t.teardown(r.close);
    const error = await refusal(r, { authorization: `Bearer ${token(r)}` });
    t.is(error?.code, grpc.status.UNAUTHENTICATED);
    t.regex(error!.details, message);
  });
}

test('no credentials at all: UNAUTHENTICATED', async (t) => {
  const r = await caRig();
  t.teardown(r.close);
  const error = await refusal(r, {});
  t.is(error?.code, grpc.status.UNAUTHENTICATED);
});

test('a valid token from a service-account subject only (no kubernetes.io claim) is accepted', async (t) => {
  const r = await caRig();
  t.teardown(r.close);
  const token = mintJwt(claims({ sub: 'system:serviceaccount:shop:cart', 'kubernetes.io': undefined }), r.issuer.key, r.issuer.kid);
  const chain = await createCertificate(r.client, opensslCsr('ec-p256').csr, { authorization: `Bearer ${token}` });
  t.is(new X509Certificate(chain[0]!).subjectAltName, 'URI:spiffe://cluster.local/ns/shop/sa/cart');
});

test('renewal over TLS with the workload certificate; a token naming someone else is PERMISSION_DENIED', async (t) => {
  const r = await caRig('ec-p256', { tlsListen: '127.0.0.1:0' });
  t.teardown(r.close);
  const first = opensslCsr('ec-p256');
  const chain = await createCertificate(r.client, first.csr, r.bearer('vm', 'vm-sa'));
  // The relay's own serving certificate is for istiod's name and chains to the mesh root.
  const target = formatAddress(r.relay.addresses.tls!);
  const root = Buffer.from(chain.at(-1)!);
  const options = { 'grpc.ssl_target_name_override': 'istiod.istio-system.svc', 'grpc.default_authority': 'istiod.istio-system.svc' };
  const tlsClient = new grpc.Client(target, grpc.credentials.createSsl(root, Buffer.from(first.keyPem), Buffer.from(chain.slice(0, -1).join(''))), options);
  t.teardown(() => tlsClient.close());
  const renewed = await createCertificate(tlsClient, opensslCsr('ec-p256').csr);
  t.is(new X509Certificate(renewed[0]!).subjectAltName, 'URI:spiffe://cluster.local/ns/vm/sa/vm-sa');
  t.regex(opensslVerify(renewed, r.rootFile), /OK/);
  const mismatch = await createCertificate(tlsClient, opensslCsr('ec-p256').csr, r.bearer('other', 'sa')).then(() => undefined, (e: grpc.ServiceError) => e);
  t.is(mismatch?.code, grpc.status.PERMISSION_DENIED);
});

test('a client certificate from a foreign CA gets no certificate', async (t) => {
  const r = await caRig('ec-p256', { tlsListen: '127.0.0.1:0' });
  t.teardown(r.close);
  const foreign = await caRig('ec-p256');
  t.teardown(foreign.close);
  const key = opensslCsr('ec-p256');
  const foreignChain = await createCertificate(foreign.client, key.csr, foreign.bearer());
  const ours = await createCertificate(r.client, opensslCsr('ec-p256').csr, r.bearer());
  const target = formatAddress(r.relay.addresses.tls!);
  const client = new grpc.Client(target, grpc.credentials.createSsl(Buffer.from(ours.at(-1)!), Buffer.from(key.keyPem), Buffer.from(foreignChain.slice(0, -1).join(''))),
    { 'grpc.ssl_target_name_override': 'istiod.istio-system.svc' });
  t.teardown(() => client.close());
  const error = await createCertificate(client, opensslCsr('ec-p256').csr).then(() => undefined, (e: grpc.ServiceError) => e);
  t.is(error?.code, grpc.status.UNAUTHENTICATED);
});

test('a configured jwksFile without jwtIssuers is a config error naming the key', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'jwks-'));
  writeFileSync(path.join(dir, 'jwks.json'), JSON.stringify({ keys: [] }));
  const error = await t.throwsAsync(caRig('ec-p256', { jwksFile: path.join(dir, 'jwks.json'), jwtIssuers: [] }));
  t.regex(error!.message, /jwtIssuers/);
});
