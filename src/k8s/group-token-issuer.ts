import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { CA_AUDIENCE } from '../ca/identity.js';
import { loadKubeConfig } from './kube-client.js';

/** How long a token the relay asks for lives (the API server may grant less; its answer is used). */
const TOKEN_SECONDS = 3600;

/**
 * `groupIdentity: token-request`: the relay asks the API server for a token of a group's service
 * account (TokenRequest, audience `istio-ca`, as kubelet projects one into a pod), so a group whose
 * members hold only workload certificates still authenticates toward istiod without XFCC. Needs
 * `create` on `serviceaccounts/token` (docs/SECURITY.md).
 */
export class GroupTokenIssuer {
  private readonly api: CoreV1Api;

  constructor(kubeConfig: KubeConfig) {
    this.api = kubeConfig.makeApiClient(CoreV1Api);
  }

  async issue(namespace: string, serviceAccount: string): Promise<{ token: string; expiresAt: number }> {
    const answer = await this.api.createNamespacedServiceAccountToken({
      name: serviceAccount, namespace,
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { audiences: [CA_AUDIENCE], expirationSeconds: TOKEN_SECONDS } },
    });
    const token = answer.status?.token;
    if (!token) throw new Error(`the API server issued no token for ${namespace}/${serviceAccount}`);
    const expires = answer.status?.expirationTimestamp;
    return { token, expiresAt: expires ? new Date(expires).getTime() : Date.now() + TOKEN_SECONDS * 1000 };
  }
}

/** The registry's plug-in for groupIdentity token-request. */
export function groupTokenIssuer(kubeconfig: string): (namespace: string, serviceAccount: string) => Promise<{ token: string; expiresAt: number }> {
  const issuer = new GroupTokenIssuer(loadKubeConfig(kubeconfig));
  return (namespace, serviceAccount) => issuer.issue(namespace, serviceAccount);
}
