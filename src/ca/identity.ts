import { RelayError } from '../errors.js';

/** The audience Istio's CA requires of service-account tokens. */
export const CA_AUDIENCE = 'istio-ca';

import type { WorkloadIdentity } from '../identity.js';

export function parseSpiffeId(uri: string): WorkloadIdentity | undefined {
  const match = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(uri);
  return match ? { trustDomain: match[1]!, namespace: match[2]!, serviceAccount: match[3]! } : undefined;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/**
 * A namespace and service account as Kubernetes allows them (a DNS-1123 label; a DNS-1123
 * subdomain): anything else — `other/sa/admin`, say — would build another SPIFFE path than the
 * account's, so a token naming one is refused rather than trusted.
 */
export function kubernetesServiceAccount(namespace: string, serviceAccount: string): { namespace: string; serviceAccount: string } {
  if (!DNS_LABEL.test(namespace)) throw unauthenticated(`token names namespace "${namespace.slice(0, 80)}", which is not a Kubernetes namespace name`);
  if (!DNS_SUBDOMAIN.test(serviceAccount)) throw unauthenticated(`token names service account "${serviceAccount.slice(0, 80)}", which is not a Kubernetes service account name`);
  return { namespace, serviceAccount };
}

export function sameIdentity(a: WorkloadIdentity, b: WorkloadIdentity): boolean {
  return a.trustDomain === b.trustDomain && a.namespace === b.namespace && a.serviceAccount === b.serviceAccount;
}

export const unauthenticated = (message: string) => new RelayError('MR_UNAUTHENTICATED', message);
export const permissionDenied = (message: string) => new RelayError('MR_PERMISSION_DENIED', message);
