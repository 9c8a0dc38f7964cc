import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomically } from '../config/files.js';
import { CA_AUDIENCE } from './identity.js';
import { mintJwt } from './jwt.js';

/** The issuer name of development tokens; the relay trusts it only where configured (npm start does). */
export const DEV_ISSUER = 'meshrelay-dev';

export interface DevTokenIssuer {
  jwksFile: string;
  key: KeyObject;
  kid: string;
}

/**
 * A development stand-in for the cluster's service-account token issuer: an ES256 key in
 * `<dir>/key.pem` and its public JWKS in `<dir>/jwks.json`, created on first use.
 */
export function ensureDevTokenIssuer(directory: string): DevTokenIssuer {
  const keyFile = path.join(directory, 'key.pem');
  const jwksFile = path.join(directory, 'jwks.json');
  if (!existsSync(keyFile)) {
    mkdirSync(directory, { recursive: true, mode: 0o700 });
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    writeFileAtomically(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), 0o600);
  }
  const key = createPrivateKey(readFileSync(keyFile));
  const jwk = createPublicKey(key).export({ format: 'jwk' });
  const kid = createHash('sha256').update(JSON.stringify(jwk)).digest('base64url').slice(0, 16);
  const jwks = `${JSON.stringify({ keys: [{ ...jwk, kid, use: 'sig', alg: 'ES256' }] }, null, 2)}\n`;
  // Every worker calls this at startup while the others read the file: write only what changed.
  if (!existsSync(jwksFile) || readFileSync(jwksFile, 'utf8') !== jwks) writeFileAtomically(jwksFile, jwks);
  return { jwksFile, key, kid };
}

/** A token like a projected Kubernetes service-account token with audience istio-ca. */
export function mintDevToken(issuer: DevTokenIssuer, namespace: string, serviceAccount: string, ttlSeconds: number, now = Date.now()): string {
  const iat = Math.floor(now / 1000);
  return mintJwt({
    iss: DEV_ISSUER,
    sub: `system:serviceaccount:${namespace}:${serviceAccount}`,
    aud: [CA_AUDIENCE],
    iat,
    nbf: iat,
    exp: iat + ttlSeconds,
    'kubernetes.io': { namespace, serviceaccount: { name: serviceAccount } },
  }, issuer.key, issuer.kid);
}
