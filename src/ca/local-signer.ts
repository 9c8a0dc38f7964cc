import { RelayError } from '../errors.js';
import type { CaBundle } from './ca-bundle.js';
import { spiffeId, type WorkloadIdentity } from '../identity.js';
import { Oid, derToPem, issueCertificate, parseCsr } from './x509.js';

export interface TtlPolicy {
  /** Used when the request asks for ≤ 0 (istiod: DEFAULT_WORKLOAD_CERT_TTL, 24h). */
  defaultSeconds: number;
  /** Above it the request is refused (istiod: MAX_WORKLOAD_CERT_TTL, 90d). */
  maxSeconds: number;
}

const CLOCK_SKEW_MS = 60_000;

/**
 * Signs workload CSRs with the plugged-in CA, as istiod does: for the authenticated identity only
 * (the CSR's own names are ignored), digitalSignature+keyEncipherment, serverAuth+clientAuth, the
 * lifetime clamped to the CA's, and the chain [leaf, cert-chain…, root].
 */
export class LocalSigner {
  constructor(private readonly ca: { readonly bundle: CaBundle }, private readonly ttl: TtlPolicy) {}

  sign(csrPem: string, identity: WorkloadIdentity, requestedSeconds: number, now = Date.now()): string[] {
    const csr = parseCsr(csrPem);
    const seconds = requestedSeconds > 0 ? requestedSeconds : this.ttl.defaultSeconds;
    if (seconds > this.ttl.maxSeconds) {
      throw new RelayError('MR_BAD_TTL', `requested TTL ${seconds}s is greater than the max allowed TTL ${this.ttl.maxSeconds}s`);
    }
    const bundle = this.ca.bundle;
    const caExpiry = new Date(bundle.certificate.validTo).getTime();
    if (caExpiry <= now) throw new RelayError('MR_CA_EXPIRED', 'the signing CA certificate has expired');
    const notAfter = new Date(Math.min(now + seconds * 1000, caExpiry));
    const leaf = issueCertificate({
      subject: [],
      spki: csr.spki,
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter,
      isCa: false,
      keyUsage: ['digitalSignature', 'keyEncipherment'],
      extendedKeyUsage: [Oid.serverAuth, Oid.clientAuth],
      uris: [spiffeId(identity)],
    }, bundle.issuer);
    return [derToPem(leaf), ...bundle.chainPems, bundle.rootPem];
  }

  /** Issues the relay's own serving certificate for DNS names (same CA, serverAuth+clientAuth). */
  issueServing(spki: Buffer, dnsNames: string[], lifetimeSeconds: number, now = Date.now()): { certificateChainPem: string; notAfter: Date } {
    const bundle = this.ca.bundle;
    const notAfter = new Date(Math.min(now + lifetimeSeconds * 1000, new Date(bundle.certificate.validTo).getTime()));
    const der = issueCertificate({
      subject: [], spki, notBefore: new Date(now - CLOCK_SKEW_MS), notAfter, isCa: false,
      keyUsage: ['digitalSignature', 'keyEncipherment'], extendedKeyUsage: [Oid.serverAuth, Oid.clientAuth], dnsNames,
    }, bundle.issuer);
    return { certificateChainPem: [derToPem(der), ...bundle.chainPems].join(''), notAfter };
  }

  /** Expiry times for the metrics. */
  expiries(): { root: Date; chain: Date } {
    const bundle = this.ca.bundle;
    return { root: new Date(bundle.root.validTo), chain: new Date(bundle.certificate.validTo) };
  }
}
