/** A workload identity as Istio writes it: spiffe://<trust domain>/ns/<namespace>/sa/<service account>. */
export interface WorkloadIdentity {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

export function spiffeId(identity: WorkloadIdentity): string {
  return `spiffe://${identity.trustDomain}/ns/${identity.namespace}/sa/${identity.serviceAccount}`;
}

/**
 * istiod's rule for what a proven identity may claim (pilot/pkg/xds/auth.go for xDS streams,
 * pilot/pkg/autoregistration ValidateWorkloadEntryIdentity for WorkloadEntries): the same
 * namespace, and the same service account where one is claimed. Returns what differs.
 */
export function identityMismatch(proven: Pick<WorkloadIdentity, 'namespace' | 'serviceAccount'>, claimed: { namespace: string; serviceAccount?: string }): 'namespace' | 'service account' | undefined {
  if (proven.namespace !== claimed.namespace) return 'namespace';
  if (claimed.serviceAccount && proven.serviceAccount !== claimed.serviceAccount) return 'service account';
  return undefined;
}
