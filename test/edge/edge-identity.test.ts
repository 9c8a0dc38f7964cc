import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { DEV_ISSUER, ensureDevTokenIssuer, mintDevToken } from '../../src/ca/dev-token-issuer.js';
import { formatAddress } from '../../src/transport/listen-address.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { AdsTestClient, vmNode } from '../helpers/ads-client.js';
import { createCertificate, opensslCsr, opensslVerify } from '../helpers/ca-client.js';
import { startEdgeSite, toxiproxyUnavailable } from '../helpers/edge-link.js';
import { makeEdgePki, type EdgePki } from '../helpers/openssl-certs.js';
import { ConfigProxy, resourceNames } from '../helpers/proxy-config.js';

const unavailable = toxiproxyUnavailable();
const edgeTest = unavailable ? test.skip : test.serial;
if (unavailable) test('edge identity tests (toxiproxy)', (t) => t.log(`skipped: ${unavailable}`));

const ISTIOD_NAME = 'istiod.istio-system.svc';

/** A mesh root, a central relay with its intermediate (TLS listener, trusting the edge relay), and an edge relay with its own. */
async function startTrustedEdge(pki: EdgePki) {
  const state = mkdtempSync(path.join(tmpdir(), 'meshrelay-edge-identity-'));
  const issuer = ensureDevTokenIssuer(path.join(state, 'issuer'));
  const tokens = { jwksFile: issuer.jwksFile, jwtIssuers: [DEV_ISSUER] };
  const site = await startEdgeSite({
    upstreamCaFile: pki.rootCert, upstreamCertFile: pki.edgeRelayCert, upstreamKeyFile: pki.edgeRelayKey, upstreamServerName: ISTIOD_NAME,
    caMode: 'local', caDir: pki.edgeCaDir, stateDir: path.join(state, 'edge'), ...tokens,
  }, {
    tlsListen: '127.0.0.1:0', tlsCertFile: pki.serverCert, tlsKeyFile: pki.serverKey, tlsClientCaFile: pki.rootCert, trustedRelays: [pki.edgeRelayId],
    caMode: 'local', caDir: pki.centralCaDir, stateDir: path.join(state, 'central'), ...tokens,
  });
  return { site, token: (namespace = 'vm', serviceAccount = 'vm-sa') => mintDevToken(issuer, namespace, serviceAccount, 600) };
}

edgeTest('an edge relay authenticates to the central relay with its own workload certificate and speaks for its VMs with their credentials; VM certificates issued at the edge, also with the link cut, verify against the mesh root', async (t) => {
  const pki = makeEdgePki();
  const { site, token } = await startTrustedEdge(pki);
  try {
    const bearer = { authorization: `Bearer ${token()}` };
    const proxy = new ConfigProxy(site.edge.target, 'delta', vmNode(), { headers: bearer });
    const config = await proxy.settled(500, 15_000);
    t.true(resourceNames(config, TypeUrl.cluster).length > 0, 'the VM at the edge got its config through the centre\'s authenticated listener');
    const [atCentre] = await (await fetch(`${site.central.adminUrl}/debug/syncz`)).json() as Array<{ caller?: { identity: string; relayedBy?: string } }>;
    t.deepEqual(atCentre?.caller, { identity: 'spiffe://cluster.local/ns/vm/sa/vm-sa', relayedBy: pki.edgeRelayId }, 'the centre saw the edge\'s certificate carrying the VM\'s token');
    proxy.close();

    await site.toxiproxy.cut(site.link);
    const ca = new grpc.Client(site.edge.target, grpc.credentials.createInsecure());
    t.teardown(() => ca.close());
    const chain = await createCertificate(ca, opensslCsr('ec-p256', 'URI:spiffe://cluster.local/ns/vm/sa/vm-sa').csr, bearer);
    t.regex(opensslVerify(chain, pki.rootCert), /: OK/, 'leaf → edge intermediate → mesh root, checked by openssl');
    t.is(new X509Certificate(chain[0]!).subjectAltName, 'URI:spiffe://cluster.local/ns/vm/sa/vm-sa');
    t.true(new X509Certificate(chain[0]!).checkIssued(new X509Certificate(chain[1]!)), 'the edge intermediate signed it');
    t.true(new X509Certificate(chain[1]!).checkIssued(new X509Certificate(readFileSync(pki.rootCert))), 'the mesh root signed the edge intermediate');
    await site.toxiproxy.heal(site.link);
  } finally {
    await site.close();
  }
});

edgeTest('on the central relay\'s TLS listener only a trusted relay\'s certificate may carry a VM\'s credential, and it must carry one', async (t) => {
  const pki = makeEdgePki();
  const { site, token } = await startTrustedEdge(pki);
  t.teardown(() => site.close());
  const target = formatAddress(site.central.addresses.tls!);
  const stream = (cert: string, key: string, headers: Record<string, string>) => {
    const credentials = grpc.credentials.createSsl(readFileSync(pki.rootCert), readFileSync(key), readFileSync(cert));
    const client = new grpc.Client(target, credentials, { 'grpc.ssl_target_name_override': ISTIOD_NAME, 'grpc.default_authority': ISTIOD_NAME });
    const ads = new AdsTestClient(target, 'delta', client, headers, true);
    t.teardown(() => ads.close());
    ads.send({ node: vmNode(), type_url: TypeUrl.cluster });
    return ads;
  };
  const bearer = { authorization: `Bearer ${token()}` };

  t.true((await stream(pki.edgeRelayCert, pki.edgeRelayKey, bearer).next(10_000)).resources.length > 0, 'the trusted relay with the VM\'s token is served');
  const vouched = { 'x-forwarded-client-cert': 'Hash=00;Subject="";URI=spiffe://cluster.local/ns/vm/sa/vm-sa' };
  t.true((await stream(pki.edgeRelayCert, pki.edgeRelayKey, vouched).next(10_000)).resources.length > 0, 'the trusted relay vouching for the VM\'s certificate is served');

  const untrusted = await stream(pki.otherRelayCert, pki.otherRelayKey, bearer).status;
  t.is(untrusted.code, grpc.status.PERMISSION_DENIED, 'another certificate with a VM\'s token: the two identities disagree');
  const empty = await stream(pki.edgeRelayCert, pki.edgeRelayKey, {}).status;
  t.is(empty.code, grpc.status.PERMISSION_DENIED);
  t.regex(empty.details, /carries no credential of the VMs it speaks for/);
  const otherVm = await stream(pki.edgeRelayCert, pki.edgeRelayKey, { authorization: `Bearer ${token('shop', 'cart')}` }).status;
  t.is(otherVm.code, grpc.status.PERMISSION_DENIED, 'the VM\'s credential must match the node the relay speaks as');
});
