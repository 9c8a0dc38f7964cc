import type { ServeConfig } from '../config/schema.js';
import type { Disposer } from '../disposer.js';
import { loadKubeConfig } from '../k8s/kube-client.js';
import { KubernetesTopologyWatch } from '../k8s/topology-watch.js';
import type { Logger } from '../log.js';
import { staticGateways } from '../mesh/mesh-networks.js';
import { MeshNetworksFile } from '../mesh/mesh-networks-file.js';
import { NetworkTopology } from '../mesh/network-topology.js';
import type { BackoffPolicy } from '../transport/backoff.js';

/**
 * The mesh's networks and gateways, merged from every source configured: `--gateways`, a
 * meshNetworks file, and the Kubernetes cluster (docs/SPLIT-HORIZON.md).
 */
export async function setUpTopology(config: ServeConfig, backoff: BackoffPolicy, log: Logger, disposer: Disposer): Promise<NetworkTopology> {
  const topology = new NetworkTopology();
  disposer.defer(() => topology.close());
  if (config.gateways.length > 0) {
    const { networks, clusters } = staticGateways(config.gateways);
    topology.set({ name: 'flags', networks: { networks }, clusters });
  }
  if (config.meshNetworksFile) {
    const file = new MeshNetworksFile(config.meshNetworksFile, topology, log.child({ component: 'mesh' }));
    file.start();
    disposer.defer(() => file.close());
  }
  if (config.kubernetesTopology) {
    const watch = new KubernetesTopologyWatch(loadKubeConfig(config.kubeconfig), topology, {
      istioNamespace: config.istioNamespace, clusterId: config.clusterId, domain: config.clusterDomain, backoff,
    }, log.child({ component: 'k8s' }));
    disposer.defer(() => watch.close());
    await watch.start();
  }
  return topology;
}
