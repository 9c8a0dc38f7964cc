import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CaFiles } from './ca-bundle.js';
import { derToPem, issueCertificate, issuerOf, Oid } from './x509.js';

export type CaKeyType = 'rsa-2048' | 'rsa-4096' | 'ec-p256';

function generateKey(type: CaKeyType): { privateKey: KeyObject; spki: Buffer } {
  const pair = type === 'ec-p256'
    ? generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
    : generateKeyPairSync('rsa', { modulusLength: type === 'rsa-4096' ? 4096 : 2048 });
  return { privateKey: pair.privateKey, spki: pair.publicKey.export({ type: 'spki', format: 'der' }) };
}

const YEAR_MS = 365 * 24 * 3600 * 1000;

/**
 * Writes a development CA in Istio's plugged-CA layout: a self-signed root and an intermediate that
 * signs (ca-cert.pem, ca-key.pem, cert-chain.pem = intermediate, root-cert.pem). For trying the
 * relay without a cluster; production uses the mesh's own CA files.
 */
export function createDevCa(directory: string, options: { keyType?: CaKeyType; organization?: string; validityMs?: number } = {}): void {
  const keyType = options.keyType ?? 'ec-p256';
  const organization = options.organization ?? 'meshrelay-dev';
  const now = Date.now();
  const notBefore = new Date(now - 60_000);
  const root = generateKey(keyType);
  const rootDer = issueCertificate({
    subject: [[Oid.organizationName, organization], [Oid.commonName, 'meshrelay dev root CA']],
    spki: root.spki, notBefore, notAfter: new Date(now + 10 * YEAR_MS),
    isCa: true, keyUsage: ['digitalSignature', 'keyCertSign', 'cRLSign'], extendedKeyUsage: [],
  }, 'self-signed', root.privateKey);
  const intermediate = generateKey(keyType);
  const intermediateDer = issueCertificate({
    subject: [[Oid.organizationName, organization], [Oid.commonName, 'meshrelay dev intermediate CA']],
    spki: intermediate.spki, notBefore, notAfter: new Date(now + (options.validityMs ?? 5 * YEAR_MS)),
    isCa: true, keyUsage: ['digitalSignature', 'keyCertSign', 'cRLSign'], extendedKeyUsage: [],
  }, issuerOf(rootDer, root.privateKey));
  mkdirSync(directory, { recursive: true, mode: 0o700 });
  const intermediatePem = derToPem(intermediateDer);
  writeFileSync(path.join(directory, CaFiles.root), derToPem(rootDer));
  writeFileSync(path.join(directory, CaFiles.cert), intermediatePem);
  writeFileSync(path.join(directory, CaFiles.chain), intermediatePem);
  writeFileSync(path.join(directory, CaFiles.key), intermediate.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
}

/** Creates the dev CA unless the directory already holds one; returns whether it created it. */
export function ensureDevCa(directory: string): boolean {
  if (existsSync(path.join(directory, CaFiles.cert))) return false;
  createDevCa(directory);
  return true;
}
