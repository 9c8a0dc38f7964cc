import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CaFiles } from '../../src/ca/ca-bundle.js';
import { createDevCa } from '../../src/ca/dev-ca.js';
import { derToPem, issueCertificate, issuerOf, Oid, pemToDers } from '../../src/ca/x509.js';
import { spiffeId } from '../../src/identity.js';
import type { ClientTls } from '../xds/envoy-client.js';

/** The name the relays' serving certificate carries and the VMs expect. */
export const RELAY_SERVER_NAME = 'meshrelay.bench.local';

export interface BenchCredentials {
  /** The root the VMs trust and the relays check client certificates against. */
  rootFile: string;
  /** The relays' TLS listener certificate and key. */
  serving: { certFile: string; keyFile: string };
  /** What a VM of each service account presents: a workload certificate of its SPIFFE identity. */
  client(serviceAccount: string): ClientTls;
}

const DAY_MS = 24 * 3600 * 1000;

/**
 * A CA of the bench's own in `directory` (the dev CA's layout) and what it issues: the relays'
 * serving certificate and the VMs' workload certificates (URI SAN spiffe://cluster.local/ns/…/sa/…),
 * so a VM is identified as istio-agent's would be by its certificate, with no token review.
 */
export function benchCredentials(directory: string, trustDomain = 'cluster.local'): BenchCredentials {
  createDevCa(directory, { organization: 'meshrelay-bench' });
  const read = (file: string) => readFileSync(path.join(directory, file), 'utf8');
  const issuer = issuerOf(pemToDers(read(CaFiles.cert))[0]!, createPrivateKey(read(CaFiles.key)));
  const chain = read(CaFiles.chain);
  const root = read(CaFiles.root);
  const issue = (names: { uris?: string[]; dnsNames?: string[] }, extendedKeyUsage: string[]) => {
    const pair = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const now = Date.now();
    const der = issueCertificate({
      subject: [], spki: pair.publicKey.export({ type: 'spki', format: 'der' }), notBefore: new Date(now - 60_000), notAfter: new Date(now + DAY_MS),
      isCa: false, keyUsage: ['digitalSignature', 'keyEncipherment'], extendedKeyUsage, ...names,
    }, issuer);
    return { cert: derToPem(der) + chain, key: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
  };
  const serving = issue({ dnsNames: [RELAY_SERVER_NAME] }, [Oid.serverAuth]);
  const servingFiles = { certFile: path.join(directory, 'relay-cert.pem'), keyFile: path.join(directory, 'relay-key.pem') };
  writeFileSync(servingFiles.certFile, serving.cert);
  writeFileSync(servingFiles.keyFile, serving.key, { mode: 0o600 });
  const clients = new Map<string, ClientTls>();
  return {
    rootFile: path.join(directory, CaFiles.root),
    serving: servingFiles,
    client: (serviceAccount) => {
      let credentials = clients.get(serviceAccount);
      if (!credentials) {
        const issued = issue({ uris: [spiffeId({ trustDomain, namespace: 'vm', serviceAccount })] }, [Oid.clientAuth]);
        credentials = { ca: root, cert: issued.cert, key: issued.key, servername: RELAY_SERVER_NAME };
        clients.set(serviceAccount, credentials);
      }
      return credentials;
    },
  };
}
