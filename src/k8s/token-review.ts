import { AuthenticationV1Api, type KubeConfig } from '@kubernetes/client-node';
import { RelayError } from '../errors.js';
import { kubernetesServiceAccount, unauthenticated } from '../ca/identity.js';
import type { WorkloadIdentity } from '../identity.js';
import type { TokenVerifier } from '../ca/authenticator.js';

/**
 * Bearer tokens checked by the API server (TokenReview with the `istio-ca` audience), as istiod's
 * Kubernetes JWT authenticator does. A negative review is UNAUTHENTICATED; an API server that
 * cannot be asked is UNAVAILABLE, so istio-agent retries instead of giving up.
 */
export class TokenReviewVerifier implements TokenVerifier {
  private readonly api: AuthenticationV1Api;

  constructor(kubeConfig: KubeConfig, private readonly audience: string, private readonly trustDomain: string) {
    this.api = kubeConfig.makeApiClient(AuthenticationV1Api);
  }

  async verify(token: string): Promise<WorkloadIdentity> {
    let review;
    try {
      review = await this.api.createTokenReview({
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [this.audience] } },
      });
    } catch (error) {
      throw new RelayError('MR_CA_UNAVAILABLE', `TokenReview failed: ${(error as Error).message}`, { cause: error });
    }
    const status = review.status;
    if (!status?.authenticated) throw unauthenticated(`the API server did not authenticate the token${status?.error ? `: ${status.error}` : ''}`);
    if (status.audiences && !status.audiences.includes(this.audience)) throw unauthenticated(`token audiences ${JSON.stringify(status.audiences)} do not include ${this.audience}`);
    const match = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(status.user?.username ?? '');
    if (!match) throw unauthenticated(`token belongs to ${status.user?.username ?? 'nobody'}, not a service account`);
    return { trustDomain: this.trustDomain, ...kubernetesServiceAccount(match[1]!, match[2]!) };
  }
}
