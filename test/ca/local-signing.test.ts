import { X509Certificate, createPublicKey } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { createCertificate, opensslCsr, opensslVerify } from '../helpers/ca-client.js';
import { caRig } from '../helpers/ca-rig.js';
import { eventually } from '../helpers/harness.js';
import { createDevCa } from '../../src/ca/dev-ca.js';

const DAY = 24 * 3600 * 1000;

for (const caKey of ['rsa-2048', 'rsa-4096', 'ec-p256'] as const) {
  for (const csrKey of ['rsa-2048', 'ec-p256'] as const) {
    test(`${caKey} CA signs a ${csrKey} CSR for the token's identity; openssl verifies the chain`, async (t) => {
      const r = await caRig(caKey);
      t.teardown(r.close);
      const { csr } = opensslCsr(csrKey);
      const chain = await createCertificate(r.client, csr, r.bearer('vm', 'vm-sa'));
      t.is(chain.length, 3, '[leaf, intermediate (cert-chain.pem), root]');
      t.regex(opensslVerify(chain, r.rootFile), /leaf\.pem: OK/);
      const leaf = new X509Certificate(chain[0]!);
      t.is(leaf.subjectAltName, 'URI:spiffe://cluster.local/ns/vm/sa/vm-sa', 'the CSR asked for ns/evil; the token says ns/vm');
      t.false(leaf.ca);
      const lifetime = Date.parse(leaf.validTo) - Date.parse(leaf.validFrom);
      t.true(Math.abs(lifetime - DAY) <= 2 * 60_000, `default TTL 24h (got ${lifetime} ms)`);
      t.true(leaf.verify(new X509Certificate(chain[1]!).publicKey));
      t.is(chain[2], new X509Certificate(chain[2]!).toString());
    });
  }
}

test('key usage and extended key usage are istiod\'s: digitalSignature, keyEncipherment; serverAuth, clientAuth', async (t) => {
  const r = await caRig();
  t.teardown(r.close);
  const chain = await createCertificate(r.client, opensslCsr('ec-p256').csr, r.bearer());
  const leaf = new X509Certificate(chain[0]!);
  t.deepEqual(leaf.keyUsage?.sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
  const text = execFileSync('openssl', ['x509', '-noout', '-text'], { input: chain[0]!, encoding: 'utf8' });
  t.regex(text, /X509v3 Key Usage: critical\s+Digital Signature, Key Encipherment/);
  t.regex(text, /X509v3 Basic Constraints: critical\s+CA:FALSE/);
  t.regex(text, /X509v3 Subject Alternative Name: critical\s+URI:spiffe:\/\/cluster\.local\/ns\/vm\/sa\/vm-sa/);
});

test('TTL: a requested lifetime is honoured, above the maximum is refused, and never past the CA\'s expiry', async (t) => {
  const r = await caRig('ec-p256', { maxWorkloadCertTtlSeconds: 7 * 24 * 3600 });
  t.teardown(r.close);
  const { csr } = opensslCsr('ec-p256');
  const hour = new X509Certificate((await createCertificate(r.client, csr, r.bearer(), 3600))[0]!);
  t.true(Math.abs(Date.parse(hour.validTo) - Date.now() - 3600_000) < 120_000);
  const error = await t.throwsAsync(createCertificate(r.client, csr, r.bearer(), 8 * 24 * 3600)) as grpc.ServiceError;
  t.is(error.code, grpc.status.INVALID_ARGUMENT);
  t.regex(error.details, /greater than the max allowed TTL/);
});

test('replaced CA files are picked up, and a leaf never outlives its CA', async (t) => {
  const r = await caRig();
  t.teardown(r.close);
  createDevCa(r.caDir, { validityMs: 3600_000 });
  const ca = new X509Certificate(readFileSync(path.join(r.caDir, 'ca-cert.pem')));
  const chain = await eventually(() => createCertificate(r.client, opensslCsr('ec-p256').csr, r.bearer()), (c) => c[1] === ca.toString(), 20_000);
  const leaf = new X509Certificate(chain[0]!);
  t.true(Date.parse(leaf.validTo) <= Date.parse(ca.validTo), '24h requested, clamped to the CA\'s remaining hour');
  t.regex(opensslVerify(chain, r.rootFile), /OK/, 'the chain verifies against the new root');
});

test('broken CA files are ignored: the last good CA keeps signing', async (t) => {
  const r = await caRig();
  t.teardown(r.close);
  const before = readFileSync(path.join(r.caDir, 'ca-cert.pem'), 'utf8');
  writeFileSync(path.join(r.caDir, 'ca-key.pem'), 'not a key');
  await new Promise((resolve) => setTimeout(resolve, 500));
  const chain = await createCertificate(r.client, opensslCsr('ec-p256').csr, r.bearer());
  t.is(chain[1], new X509Certificate(before).toString());
  t.regex(opensslVerify(chain, r.rootFile), /OK/);
});

test('many concurrent CSRs: none lost, none duplicated, each for its own key', async (t) => {
  const r = await caRig('rsa-2048');
  t.teardown(r.close);
  const csrs = Array.from({ length: 4 }, () => opensslCsr('ec-p256'));
  const headers = r.bearer();
  const requests = Array.from({ length: 400 }, (_, i) => ({ i, csr: csrs[i % csrs.length]! }));
  const chains = await Promise.all(requests.map(({ csr }) => createCertificate(r.client, csr.csr, headers)));
  t.is(chains.length, 400);
  const serials = new Set(chains.map((chain) => new X509Certificate(chain[0]!).serialNumber));
  t.is(serials.size, 400, 'every certificate is distinct');
  const matches = requests.every(({ i, csr }) => new X509Certificate(chains[i]![0]!).publicKey.export({ type: 'spki', format: 'der' })
    .equals(createPublicKey(csr.keyPem).export({ type: 'spki', format: 'der' })));
  t.true(matches, 'each certificate carries the key of the CSR it answers');
});

test('signing runs on its threads with bounded room: past threads × 4 in signing and caMaxQueued waiting, a CSR is RESOURCE_EXHAUSTED, the rest are issued', async (t) => {
  const r = await caRig('rsa-2048', { caSigningThreads: 1, caMaxQueued: 0 });
  t.teardown(r.close);
  const csr = opensslCsr('ec-p256');
  const headers = r.bearer();
  const outcomes = await Promise.allSettled(Array.from({ length: 40 }, () => createCertificate(r.client, csr.csr, headers)));
  const issued = outcomes.filter((outcome) => outcome.status === 'fulfilled');
  const refused = outcomes.filter((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
  t.true(issued.length >= 4, `${issued.length} issued`);
  t.true(refused.length > 0, 'some CSRs found no room');
  for (const outcome of refused) {
    t.is((outcome.reason as grpc.ServiceError).code, grpc.status.RESOURCE_EXHAUSTED);
    t.regex((outcome.reason as grpc.ServiceError).details, /local CA signing/);
  }
  t.true((await createCertificate(r.client, csr.csr, headers)).length >= 2, 'signing goes on afterwards');
});
