import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { messageType } from '../../src/xds/protocol/protos.js';

export const createCertificatePath = '/istio.v1.auth.IstioCertificateService/CreateCertificate';

export interface CsrPair {
  csr: string;
  keyFile: string;
  keyPem: string;
}

/** A CSR made by openssl (an independent implementation), with SANs the CA must ignore. */
export function opensslCsr(keyType: 'rsa-2048' | 'ec-p256' | 'ed25519' | 'rsa-1024' | 'rsa-4608' | 'rsa-2048-exponent-3', san = 'URI:spiffe://cluster.local/ns/evil/sa/attacker'): CsrPair {
  const dir = mkdtempSync(path.join(tmpdir(), 'meshrelay-csr-'));
  if (keyType === 'rsa-2048-exponent-3') {
    execFileSync('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-pkeyopt', 'rsa_keygen_pubexp:3', '-out', 'key.pem'], { cwd: dir, stdio: 'ignore' });
  }
  const keyArgs = keyType === 'ec-p256' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']
    : keyType === 'ed25519' ? ['-newkey', 'ed25519']
      : keyType === 'rsa-2048-exponent-3' ? ['-key', 'key.pem']
        : ['-newkey', keyType === 'rsa-1024' ? 'rsa:1024' : keyType === 'rsa-4608' ? 'rsa:4608' : 'rsa:2048'];
  execFileSync('openssl', ['req', '-new', ...keyArgs, '-nodes', '-keyout', 'key.pem', '-out', 'csr.pem', '-subj', '/O=ignored', '-addext', `subjectAltName=${san}`], { cwd: dir, stdio: 'ignore' });
  return { csr: readFileSync(path.join(dir, 'csr.pem'), 'utf8'), keyFile: path.join(dir, 'key.pem'), keyPem: readFileSync(path.join(dir, 'key.pem'), 'utf8') };
}

export function encodeCsrRequest(csr: string, validitySeconds = 0): Buffer {
  const type = messageType('istio.v1.auth.IstioCertificateRequest');
  return Buffer.from(type.encode(type.fromObject({ csr, validity_duration: validitySeconds })).finish());
}

export function decodeChain(bytes: Buffer): string[] {
  const type = messageType('istio.v1.auth.IstioCertificateResponse');
  return (type.decode(bytes) as unknown as { cert_chain: string[] }).cert_chain;
}

/** Sends raw request bytes; resolves with the response bytes or rejects with the gRPC error. */
export function createCertificateRaw(client: grpc.Client, request: Buffer, headers: Record<string, string> = {}): Promise<Buffer> {
  const metadata = new grpc.Metadata();
  for (const [key, value] of Object.entries(headers)) metadata.set(key, value);
  const identity = (b: Buffer) => b;
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(createCertificatePath, identity, identity, request, metadata, { deadline: Date.now() + 20_000 },
      (error, response) => (error ? reject(error) : resolve(response!)));
  });
}

export async function createCertificate(client: grpc.Client, csr: string, headers: Record<string, string> = {}, validitySeconds = 0): Promise<string[]> {
  return decodeChain(await createCertificateRaw(client, encodeCsrRequest(csr, validitySeconds), headers));
}

/** `openssl verify` of a chain [leaf, intermediates…, root] against the root; returns its output. */
export function opensslVerify(chain: string[], rootFile?: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'meshrelay-verify-'));
  writeFileSync(path.join(dir, 'leaf.pem'), chain[0]!);
  writeFileSync(path.join(dir, 'chain.pem'), chain.slice(1, -1).join(''));
  const root = rootFile ?? path.join(dir, 'root.pem');
  if (!rootFile) writeFileSync(root, chain.at(-1)!);
  const args = ['verify', '-CAfile', root, ...(chain.length > 2 ? ['-untrusted', path.join(dir, 'chain.pem')] : []), path.join(dir, 'leaf.pem')];
  return execFileSync('openssl', args, { encoding: 'utf8' });
}
