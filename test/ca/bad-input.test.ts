import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { createCertificate, createCertificateRaw, encodeCsrRequest, opensslCsr, opensslVerify } from '../helpers/ca-client.js';
import { caRig } from '../helpers/ca-rig.js';

function tamperedCsr(): string {
  const { csr } = opensslCsr('ec-p256');
  const der = Buffer.from(csr.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  // Flip a byte inside the subject (O=ignored): the signature no longer matches.
  const at = der.indexOf(Buffer.from('ignored'));
  der[at] = der[at]! ^ 0x20;
  return `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE REQUEST-----\n`;
}

const cases: Array<[string, () => Buffer, grpc.status, RegExp]> = [
  ['malformed PEM', () => encodeCsrRequest('-----BEGIN CERTIFICATE REQUEST-----\nnot base64 der!!\n-----END CERTIFICATE REQUEST-----\n'), grpc.status.INVALID_ARGUMENT, /csr/],
  ['not PEM at all', () => encodeCsrRequest('hello'), grpc.status.INVALID_ARGUMENT, /PEM/],
  ['a CSR whose signature does not verify', () => encodeCsrRequest(tamperedCsr()), grpc.status.INVALID_ARGUMENT, /proof of possession/],
  ['an Ed25519 key', () => encodeCsrRequest(opensslCsr('ed25519').csr), grpc.status.INVALID_ARGUMENT, /unsupported key type|signature algorithm/],
  ['an RSA-1024 key', () => encodeCsrRequest(opensslCsr('rsa-1024').csr), grpc.status.INVALID_ARGUMENT, /too small/],
  // Keys istio-agent never makes, which cost the CA to verify: refused before the signature is checked.
  ['an RSA-4608 key', () => encodeCsrRequest(opensslCsr('rsa-4608').csr), grpc.status.INVALID_ARGUMENT, /too large \(maximum 4096\)/],
  ['an RSA key with public exponent 3', () => encodeCsrRequest(opensslCsr('rsa-2048-exponent-3').csr), grpc.status.INVALID_ARGUMENT, /exponent 3 is not 65537/],
  ['an empty request', () => Buffer.alloc(0), grpc.status.INVALID_ARGUMENT, /no csr/],
  ['garbage bytes', () => Buffer.from([0xff, 0xff, 0xff, 0x0f, 0x01]), grpc.status.INVALID_ARGUMENT, /malformed/],
  ['a request over the size limit', () => encodeCsrRequest('x'.repeat(5 * 1024 * 1024)), grpc.status.RESOURCE_EXHAUSTED, /larger than max/],
];

for (const [name, request, code, message] of cases) {
  test(`${name}: ${grpc.status[code]}, no certificate, and the CA keeps working`, async (t) => {
    const r = await caRig();
    t.teardown(r.close);
    const error = await createCertificateRaw(r.client, request(), r.bearer()).then(() => undefined, (e: grpc.ServiceError) => e);
    t.is(error?.code, code, error?.details);
    t.regex(error!.details, message);
    const chain = await createCertificate(r.client, opensslCsr('ec-p256').csr, r.bearer());
    t.regex(opensslVerify(chain, r.rootFile), /OK/);
    const metrics = await (await fetch(`${r.relay.adminUrl}/metrics`)).text();
    if (code !== grpc.status.RESOURCE_EXHAUSTED) t.regex(metrics, new RegExp(`meshrelay_ca_csr_error_total\\{code="${grpc.status[code]}"\\} 1`));
  });
}

test('metrics count CSRs, issuances, authentication failures and CA expiry', async (t) => {
  const r = await caRig();
  t.teardown(r.close);
  await createCertificate(r.client, opensslCsr('ec-p256').csr, r.bearer());
  await createCertificate(r.client, opensslCsr('ec-p256').csr, {}).catch(() => undefined);
  const metrics = await (await fetch(`${r.relay.adminUrl}/metrics`)).text();
  t.regex(metrics, /meshrelay_ca_csr_total\{mode="local"\} 2/);
  t.regex(metrics, /meshrelay_ca_success_cert_issuance_total\{mode="local"\} 1/);
  t.regex(metrics, /meshrelay_ca_authentication_failure_total 1/);
  t.regex(metrics, /meshrelay_ca_root_cert_expiry_timestamp \d{10}/);
  t.regex(metrics, /meshrelay_ca_cert_chain_expiry_timestamp \d{10}/);
  t.regex(metrics, /meshrelay_ca_sign_seconds_count\{mode="local"\} 1/);
});
