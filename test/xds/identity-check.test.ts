import { generateKeyPairSync } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { loadCaBundle } from '../../src/ca/ca-bundle.js';
import { Oid, derToPem, issueCertificate } from '../../src/ca/x509.js';
import test from 'ava';
import { formatAddress } from '../../src/transport/listen-address.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { AdsTestClient, vmNode } from '../helpers/ads-client.js';
import { createCertificate, opensslCsr } from '../helpers/ca-client.js';
import { caRig, type CaRig } from '../helpers/ca-rig.js';
import { loadConfig } from '../../src/config/load.js';
import { serveSchema } from '../../src/config/schema.js';
import { startStaticUpstream } from '../helpers/static-upstream.js';

const tlsOptions = { 'grpc.ssl_target_name_override': 'istiod.istio-system.svc', 'grpc.default_authority': 'istiod.istio-system.svc' };

/** A VM's workload certificate, obtained from the relay's CA with a dev token, as istio-agent does. */
async function workloadCredentials(r: CaRig, namespace: string, serviceAccount: string) {
  const csr = opensslCsr('ec-p256');
  const chain = await createCertificate(r.client, csr.csr, r.bearer(namespace, serviceAccount));
  return grpc.credentials.createSsl(Buffer.from(chain.at(-1)!), Buffer.from(csr.keyPem), Buffer.from(chain.slice(0, -1).join('')));
}

async function xdsStatus(r: CaRig, credentials: grpc.ChannelCredentials, node: ReturnType<typeof vmNode>, headers: Record<string, string> = {}) {
  const target = formatAddress(r.relay.addresses.tls!);
  const client = new grpc.Client(target, credentials, tlsOptions);
  const vm = new AdsTestClient(target, 'delta', client, headers, true);
  vm.send({ node, type_url: TypeUrl.cluster });
  const outcome = await Promise.race([vm.next(5000).then(() => 'served'), vm.status.then((s) => grpc.status[s.code])]);
  vm.close();
  return outcome;
}

test('a VM authenticated by its workload certificate gets the config of its own namespace and service account only', async (t) => {
  const r = await caRig('ec-p256', { tlsListen: '127.0.0.1:0' });
  t.teardown(r.close);
  const credentials = await workloadCredentials(r, 'vm', 'vm-sa');
  t.is(await xdsStatus(r, credentials, vmNode({ namespace: 'vm', serviceAccount: 'vm-sa' })), 'served');
  t.is(await xdsStatus(r, credentials, vmNode({ namespace: 'payments', serviceAccount: 'vm-sa' })), 'PERMISSION_DENIED', 'another namespace');
  t.is(await xdsStatus(r, credentials, vmNode({ namespace: 'vm', serviceAccount: 'admin' })), 'PERMISSION_DENIED', 'another service account');
});

test('a VM authenticated by a bearer token is checked the same way; no credentials is UNAUTHENTICATED', async (t) => {
  const r = await caRig('ec-p256', { tlsListen: '127.0.0.1:0' });
  t.teardown(r.close);
  const root = Buffer.from((await createCertificate(r.client, opensslCsr('ec-p256').csr, r.bearer())).at(-1)!);
  const serverOnly = grpc.credentials.createSsl(root);
  t.is(await xdsStatus(r, serverOnly, vmNode(), r.bearer('vm', 'vm-sa')), 'served');
  t.is(await xdsStatus(r, serverOnly, vmNode(), r.bearer('other', 'vm-sa')), 'PERMISSION_DENIED');
  t.is(await xdsStatus(r, serverOnly, vmNode()), 'UNAUTHENTICATED');
  t.is(await xdsStatus(r, serverOnly, vmNode(), { authorization: 'Bearer forged.token.here' }), 'UNAUTHENTICATED');
});

test('the plaintext listener stays on loopback unless opened explicitly', (t) => {
  t.throws(() => loadConfig(serveSchema, ['--xds-listen', '0.0.0.0:15010'], {}), { message: /plaintext listener.*loopback/ });
  t.notThrows(() => loadConfig(serveSchema, ['--xds-listen', '[::1]:15010'], {}));
  t.notThrows(() => loadConfig(serveSchema, ['--xds-listen', '0.0.0.0:15010', '--plaintext-remote'], {}));
});

for (const mode of ['stream', 'group'] as const) {
  test(`[${mode} mode] a VM authenticated by its certificate is vouched for upstream with x-forwarded-client-cert`, async (t) => {
    const upstream = await startStaticUpstream();
    upstream.set(TypeUrl.cluster, { a: 'A' });
    const r = await caRig('ec-p256', { tlsListen: '127.0.0.1:0', upstream: upstream.target, mode });
    t.teardown(async () => {
      await r.close();
      await upstream.close();
    });
    const credentials = await workloadCredentials(r, 'vm', 'vm-sa');
    t.is(await xdsStatus(r, credentials, vmNode()), 'served');
    const seen = upstream.attachments.at(-1)!;
    t.regex(seen.metadata['x-forwarded-client-cert'] ?? '', /^Hash=[0-9a-f]{64};Subject="";URI=spiffe:\/\/cluster\.local\/ns\/vm\/sa\/vm-sa$/);
  });
}

test('a forged x-forwarded-client-cert from a VM is neither trusted nor passed on', async (t) => {
  const upstream = await startStaticUpstream();
  upstream.set(TypeUrl.cluster, { a: 'A' });
  const r = await caRig('ec-p256', { tlsListen: '127.0.0.1:0', upstream: upstream.target, mode: 'stream' });
  t.teardown(async () => {
    await r.close();
    await upstream.close();
  });
  const root = Buffer.from((await createCertificate(r.client, opensslCsr('ec-p256').csr, r.bearer())).at(-1)!);
  const forged = { 'x-forwarded-client-cert': 'Hash=00;URI=spiffe://cluster.local/ns/vm/sa/vm-sa' };
  t.is(await xdsStatus(r, grpc.credentials.createSsl(root), vmNode(), forged), 'UNAUTHENTICATED', 'XFCC from a VM proves nothing');
  const credentials = await workloadCredentials(r, 'vm', 'vm-sa');
  t.is(await xdsStatus(r, credentials, vmNode(), { 'x-forwarded-client-cert': 'Hash=00;URI=spiffe://cluster.local/ns/kube-system/sa/admin' }), 'served');
  t.notRegex(upstream.attachments.at(-1)!.metadata['x-forwarded-client-cert'] ?? '', /kube-system/, 'only the relay\'s own XFCC reaches istiod');
});

test('expired or foreign workload certificates are refused on the TLS listener (UNAUTHENTICATED)', async (t) => {
  const r = await caRig('ec-p256', { tlsListen: '127.0.0.1:0' });
  t.teardown(r.close);
  const foreign = await caRig('ec-p256');
  t.teardown(foreign.close);
  const bundle = loadCaBundle(r.caDir);
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const expired = issueCertificate({
    subject: [], spki: publicKey.export({ type: 'spki', format: 'der' }),
    notBefore: new Date(Date.now() - 2 * 3600_000), notAfter: new Date(Date.now() - 3600_000),
    isCa: false, keyUsage: ['digitalSignature', 'keyEncipherment'], extendedKeyUsage: [Oid.serverAuth, Oid.clientAuth], uris: ['spiffe://cluster.local/ns/vm/sa/vm-sa'],
  }, bundle.issuer);
  const key = Buffer.from(privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const expiredCredentials = grpc.credentials.createSsl(Buffer.from(bundle.rootPem), key, Buffer.from([derToPem(expired), ...bundle.chainPems].join('')));
  t.is(await xdsStatus(r, expiredCredentials, vmNode()), 'UNAUTHENTICATED', 'expired');
  const foreignCsr = opensslCsr('ec-p256');
  const foreignChain = await createCertificate(foreign.client, foreignCsr.csr, foreign.bearer('vm', 'vm-sa'));
  const foreignCredentials = grpc.credentials.createSsl(Buffer.from(bundle.rootPem), Buffer.from(foreignCsr.keyPem), Buffer.from(foreignChain.slice(0, -1).join('')));
  t.is(await xdsStatus(r, foreignCredentials, vmNode()), 'UNAUTHENTICATED', 'chained to another root');
});
