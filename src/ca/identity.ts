import { GrpcStatus, RelayError } from '../errors.js';

/** The audience Istio's CA requires of service-account tokens. */
export const CA_AUDIENCE = 'istio-ca';

/** A workload identity as Istio writes it: spiffe://<trust domain>/ns/<namespace>/sa/<service account>. */
export interface WorkloadIdentity {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

export function spiffeId(identity: WorkloadIdentity): string {
  return `spiffe://${identity.trustDomain}/ns/${identity.namespace}/sa/${identity.serviceAccount}`;
}

export function parseSpiffeId(uri: string): WorkloadIdentity | undefined {
  const match = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(uri);
  return match ? { trustDomain: match[1]!, namespace: match[2]!, serviceAccount: match[3]! } : undefined;
}

export function sameIdentity(a: WorkloadIdentity, b: WorkloadIdentity): boolean {
  return a.trustDomain === b.trustDomain && a.namespace === b.namespace && a.serviceAccount === b.serviceAccount;
}

export const unauthenticated = (message: string) => new RelayError('MR_UNAUTHENTICATED', GrpcStatus.UNAUTHENTICATED, message);
export const permissionDenied = (message: string) => new RelayError('MR_PERMISSION_DENIED', GrpcStatus.PERMISSION_DENIED, message);
