import { KubeConfig } from '@kubernetes/client-node';
import { RelayError } from '../errors.js';

/** A kubeconfig from a file, or the pod's in-cluster service account when no file is given. */
export function loadKubeConfig(kubeconfigFile: string): KubeConfig {
  const config = new KubeConfig();
  try {
    if (kubeconfigFile) config.loadFromFile(kubeconfigFile);
    else config.loadFromCluster();
  } catch (error) {
    throw new RelayError('MR_BAD_CONFIG', `cannot load kubeconfig ${kubeconfigFile || '(in-cluster)'}: ${(error as Error).message}`);
  }
  if (!config.getCurrentCluster()) {
    throw new RelayError('MR_BAD_CONFIG', `kubeconfig ${kubeconfigFile || '(in-cluster)'} names no cluster`);
  }
  return config;
}
