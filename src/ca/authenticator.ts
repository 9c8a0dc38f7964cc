import { createHash } from 'node:crypto';
import type { GrpcCall } from '../transport/grpc-server.js';
import type { CallerIdentity } from '../xds/view.js';
import { parseSpiffeId, permissionDenied, sameIdentity, unauthenticated } from './identity.js';
import { spiffeId, type WorkloadIdentity } from '../identity.js';

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
    const identity = spiffeUris(certificate.subjectaltname).map(parseSpiffeId).find((parsed) => parsed !== undefined);
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

/**
 * `x-forwarded-client-cert` in Envoy's format, which istiod's XFCC authenticator reads (it takes
 * identities from URI, DNS and Subject). istiod trusts it only from TRUSTED_GATEWAY_CIDR peers
 * connected without a client certificate of their own.
 */
export function xfccHeader(caller: AuthenticatedCaller): string {
  const hash = caller.certificateDer ? createHash('sha256').update(caller.certificateDer).digest('hex') : '';
  return `Hash=${hash};Subject="";URI=${spiffeId(caller.identity)}`;
}

/**
 * An xDS stream on the TLS listener. Most callers are VMs: their certificate or token is who they
 * are. A trusted relay (an edge relay whose certificate's SPIFFE ID is in `trustedRelays`) speaks
 * for one group of its VMs: its certificate authenticates the link, and the identity is the VM's
 * it carries — the x-forwarded-client-cert it vouches for (it verified that certificate, and is
 * trusted to say so) or the VM's bearer token (verified here), as it would send them to istiod.
 */
export async function authenticateStreamCaller(call: GrpcCall, options: AuthenticatorOptions & { trustedRelays: ReadonlySet<string> }): Promise<CallerIdentity> {
  const relayId = certificateIdentity(call);
  if (!relayId || !options.trustedRelays.has(relayId)) {
    const caller = await authenticateCaller(call, options);
    return { ...caller.identity, ...(caller.via === 'client-certificate' ? { forwardedClientCert: xfccHeader(caller) } : {}) };
  }
  const xfcc = call.header('x-forwarded-client-cert');
  const vouched = xfcc === undefined ? undefined : vouchedIdentity(xfcc, relayId);
  const token = bearerToken(call);
  const fromToken = token && options.tokens ? await options.tokens.verify(token) : undefined;
  if (token && !options.tokens && !vouched) throw unauthenticated('bearer tokens are not accepted: no token verifier is configured');
  const identity = vouched ?? fromToken;
  if (!identity) throw permissionDenied(`${relayId} is a trusted relay but carries no credential of the VMs it speaks for (a bearer token or x-forwarded-client-cert)`);
  if (vouched && fromToken && !sameIdentity(vouched, fromToken)) {
    throw permissionDenied(`the relay ${relayId} vouches for ${spiffeId(vouched)} but carries a token of ${spiffeId(fromToken)}`);
  }
  if (identity.trustDomain !== options.trustDomain) throw permissionDenied(`identity ${spiffeId(identity)} is not in trust domain ${options.trustDomain}`);
  return { ...identity, relayedBy: relayId, ...(vouched ? { forwardedClientCert: xfcc! } : {}) };
}

/** The SPIFFE ID of the peer's verified client certificate, if it has one. */
function certificateIdentity(call: GrpcCall): string | undefined {
  const certificate = call.peer.certificate;
  if (!certificate || !call.peer.certificateAuthorized) return undefined;
  return spiffeUris(certificate.subjectaltname).find((uri) => parseSpiffeId(uri) !== undefined);
}

function spiffeUris(subjectAltName: string | undefined): string[] {
  return (subjectAltName ?? '').split(', ').filter((entry) => entry.startsWith('URI:')).map((entry) => entry.slice(4));
}

/** The one SPIFFE URI of an XFCC element a relay vouches for. */
function vouchedIdentity(xfcc: string, relayId: string): WorkloadIdentity {
  const uris = [...xfcc.matchAll(/(?:^|;)URI=([^;,]+)/g)].map((match) => match[1]!);
  if (uris.length !== 1) throw unauthenticated(`the relay ${relayId} must vouch for exactly one certificate in x-forwarded-client-cert, found ${uris.length}`);
  const identity = parseSpiffeId(uris[0]!);
  if (!identity) throw unauthenticated(`the relay ${relayId} vouches for "${uris[0]!.slice(0, 120)}", which is not a SPIFFE workload identity`);
  return identity;
}
