import type { GrpcCall } from '../transport/grpc-server.js';
import { parseSpiffeId, permissionDenied, sameIdentity, spiffeId, unauthenticated } from './identity.js';
import type { WorkloadIdentity } from '../identity.js';

export interface AuthenticatedCaller {
  identity: WorkloadIdentity;
  /** How the caller proved it, in istiod's order: client certificate first, then bearer JWT. */
  via: 'client-certificate' | 'jwt';
  /** The verified client certificate's DER, when it came that way. */
  certificateDer?: Buffer;
}

/** Turns a bearer service-account token into an identity, or throws UNAUTHENTICATED. */
export interface TokenVerifier {
  verify(token: string): WorkloadIdentity | Promise<WorkloadIdentity>;
}

export interface AuthenticatorOptions {
  trustDomain: string;
  /** TokenReview or offline JWKS verification; without one, bearer tokens are refused. */
  tokens?: TokenVerifier;
}

function bearerToken(call: GrpcCall): string | undefined {
  const match = /^Bearer\s+(\S+)$/i.exec(call.header('authorization') ?? '');
  return match?.[1];
}

/**
 * Authenticates a CSR caller like istiod: a client certificate chained to the mesh root (TLS has
 * verified it) gives its SPIFFE identity; otherwise a bearer service-account JWT. Both present and
 * disagreeing, or an identity of another trust domain, is refused.
 */
export async function authenticateCaller(call: GrpcCall, options: AuthenticatorOptions): Promise<AuthenticatedCaller> {
  let fromCertificate: AuthenticatedCaller | undefined;
  const certificate = call.peer.certificate;
  if (certificate && call.peer.certificateAuthorized) {
    const uris = (certificate.subjectaltname ?? '').split(', ').filter((entry) => entry.startsWith('URI:')).map((entry) => entry.slice(4));
    const identity = uris.map(parseSpiffeId).find((parsed) => parsed !== undefined);
    if (!identity) throw unauthenticated('client certificate carries no SPIFFE identity');
    fromCertificate = { identity, via: 'client-certificate', certificateDer: certificate.raw };
  } else if (certificate) {
    throw unauthenticated('client certificate is not trusted by the mesh root or has expired');
  }
  const token = bearerToken(call);
  const fromToken = token && options.tokens ? { identity: await options.tokens.verify(token), via: 'jwt' as const } : undefined;
  if (token && !options.tokens && !fromCertificate) throw unauthenticated('bearer tokens are not accepted: no token verifier is configured');
  const caller = fromCertificate ?? fromToken;
  if (!caller) throw unauthenticated('no credentials: present a client certificate or an "authorization: Bearer <service-account JWT>" header');
  if (fromCertificate && fromToken && !sameIdentity(fromCertificate.identity, fromToken.identity)) {
    throw permissionDenied(`client certificate (${spiffeId(fromCertificate.identity)}) and bearer token (${spiffeId(fromToken.identity)}) name different identities`);
  }
  if (caller.identity.trustDomain !== options.trustDomain) {
    throw permissionDenied(`identity ${spiffeId(caller.identity)} is not in trust domain ${options.trustDomain}`);
  }
  return caller;
}
