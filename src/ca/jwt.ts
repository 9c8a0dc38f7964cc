import { createPublicKey, sign, verify, type JsonWebKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { RelayError } from '../errors.js';
import type { TokenVerifier } from './authenticator.js';
import { kubernetesServiceAccount, unauthenticated } from './identity.js';
import type { WorkloadIdentity } from '../identity.js';

/** What Kubernetes puts in a service-account token (projected tokens carry `kubernetes.io`). */
export interface ServiceAccountClaims {
  iss?: string;
  sub?: string;
  aud?: string | string[];
  exp?: number;
  nbf?: number;
  iat?: number;
  'kubernetes.io'?: { namespace?: string; serviceaccount?: { name?: string; uid?: string } };
}

const algorithms: Record<string, { hash: string; kty: string; p1363: boolean }> = {
  RS256: { hash: 'sha256', kty: 'RSA', p1363: false },
  RS384: { hash: 'sha384', kty: 'RSA', p1363: false },
  RS512: { hash: 'sha512', kty: 'RSA', p1363: false },
  ES256: { hash: 'sha256', kty: 'EC', p1363: true },
  ES384: { hash: 'sha384', kty: 'EC', p1363: true },
};

const CLOCK_SKEW_SECONDS = 60;

interface VerificationKey {
  kid: string | undefined;
  kty: string;
  key: KeyObject;
}

export interface JwtVerifierOptions {
  jwksFile: string;
  /** Accepted `iss` values; a token from any other issuer is refused. */
  issuers: string[];
  /** Required in `aud` (Istio: `istio-ca`). */
  audience: string;
  trustDomain: string;
  now?: () => number;
}

function decodeSegment(segment: string, what: string): Record<string, unknown> {
  try {
    return JSON.parse(Buffer.from(segment, 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    throw unauthenticated(`bearer token ${what} is not base64url JSON`);
  }
}

/**
 * Verifies Kubernetes service-account JWTs offline, against the cluster's issuer keys (a JWKS file,
 * as served on the API server's /openid/v1/jwks): signature, issuer, audience, expiry.
 */
export class JwtVerifier implements TokenVerifier {
  private readonly keys: VerificationKey[];

  constructor(private readonly options: JwtVerifierOptions) {
    let document: { keys?: JsonWebKey[] };
    try {
      document = JSON.parse(readFileSync(options.jwksFile, 'utf8')) as { keys?: JsonWebKey[] };
    } catch (error) {
      throw new RelayError('MR_BAD_CONFIG', `cannot read JWKS file ${options.jwksFile}: ${(error as Error).message}`);
    }
    this.keys = (document.keys ?? []).map((jwk) => ({
      kid: typeof jwk.kid === 'string' ? jwk.kid : undefined,
      kty: String(jwk.kty),
      key: createPublicKey({ key: jwk, format: 'jwk' }),
    }));
    if (this.keys.length === 0) throw new RelayError('MR_BAD_CONFIG', `JWKS file ${options.jwksFile} holds no keys`);
  }

  verify(token: string): WorkloadIdentity {
    const parts = token.split('.');
    if (parts.length !== 3) throw unauthenticated('bearer token is not a JWT');
    const header = decodeSegment(parts[0]!, 'header');
    const claims = decodeSegment(parts[1]!, 'payload') as ServiceAccountClaims;
    const algorithm = algorithms[String(header.alg)];
    if (!algorithm) throw unauthenticated(`bearer token algorithm ${String(header.alg)} is not accepted`);
    const candidates = this.keys.filter((key) => key.kty === algorithm.kty && (header.kid === undefined || key.kid === header.kid));
    const signed = Buffer.from(`${parts[0]}.${parts[1]}`);
    const signature = Buffer.from(parts[2]!, 'base64url');
    const valid = candidates.some((candidate) => verify(algorithm.hash, signed, algorithm.p1363 ? { key: candidate.key, dsaEncoding: 'ieee-p1363' } : candidate.key, signature));
    if (!valid) throw unauthenticated('bearer token signature does not verify with any trusted issuer key');
    const now = Math.floor((this.options.now ?? Date.now)() / 1000);
    if (typeof claims.exp !== 'number') throw unauthenticated('bearer token has no expiry');
    if (claims.exp + CLOCK_SKEW_SECONDS < now) throw unauthenticated(`bearer token expired at ${new Date(claims.exp * 1000).toISOString()}`);
    if (typeof claims.nbf === 'number' && claims.nbf - CLOCK_SKEW_SECONDS > now) throw unauthenticated('bearer token is not valid yet');
    if (!claims.iss || !this.options.issuers.includes(claims.iss)) throw unauthenticated(`bearer token issuer "${claims.iss ?? ''}" is not trusted`);
    const audiences = Array.isArray(claims.aud) ? claims.aud : claims.aud ? [claims.aud] : [];
    if (!audiences.includes(this.options.audience)) throw unauthenticated(`bearer token audience ${JSON.stringify(audiences)} does not include ${this.options.audience}`);
    return { trustDomain: this.options.trustDomain, ...serviceAccountOf(claims) };
  }
}

function serviceAccountOf(claims: ServiceAccountClaims): { namespace: string; serviceAccount: string } {
  const kubernetes = claims['kubernetes.io'];
  if (kubernetes?.namespace && kubernetes.serviceaccount?.name) return kubernetesServiceAccount(kubernetes.namespace, kubernetes.serviceaccount.name);
  const match = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(claims.sub ?? '');
  if (match) return kubernetesServiceAccount(match[1]!, match[2]!);
  throw unauthenticated('bearer token names no Kubernetes service account');
}

/** Mints a token shaped like a projected service-account token (for the dev issuer and tests). */
export function mintJwt(claims: ServiceAccountClaims, key: KeyObject, kid: string): string {
  const alg = key.asymmetricKeyType === 'ec' ? 'ES256' : 'RS256';
  const header = Buffer.from(JSON.stringify({ alg, kid, typ: 'JWT' })).toString('base64url');
  const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
  const signature = sign('sha256', Buffer.from(`${header}.${payload}`), alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key);
  return `${header}.${payload}.${signature.toString('base64url')}`;
}
