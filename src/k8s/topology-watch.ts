import { CoreV1Api, type KubeConfig, type V1ConfigMap, type V1Service } from '@kubernetes/client-node';
import type { Logger } from '../log.js';
import { parseMeshNetworks, type MeshNetworks } from '../mesh/mesh-networks.js';
import type { NetworkTopology } from '../mesh/network-topology.js';
import type { BackoffPolicy } from '../transport/backoff.js';
import { ResilientInformer } from './resilient-informer.js';

export const NETWORK_LABEL = 'topology.istio.io/network';
export const GATEWAY_PORT_LABEL = 'networking.istio.io/gatewayPort';
const DEFAULT_GATEWAY_PORT = 15443;

export interface TopologyWatchOptions {
  istioNamespace: string;
  /** The cluster id of this Kubernetes registry (gateways found here carry it). */
  clusterId: string;
  domain: string;
  backoff?: BackoffPolicy;
}

/**
 * Network gateways from Services labelled `topology.istio.io/network` (docs/SPLIT-HORIZON.md): those exposing
 * the gateway port (15443, or the `networking.istio.io/gatewayPort` label) give their load
 * balancer ingress IPs or host names and external IPs as gateways of that network.
 */
export function gatewaysFromServices(services: V1Service[], clusterId: string): { networks: MeshNetworks['networks']; clusters: Map<string, string> } {
  const networks: MeshNetworks['networks'] = {};
  const clusters = new Map<string, string>();
  for (const service of services) {
    const network = service.metadata?.labels?.[NETWORK_LABEL];
    if (!network) continue;
    const wanted = Number(service.metadata?.labels?.[GATEWAY_PORT_LABEL] ?? DEFAULT_GATEWAY_PORT);
    const port = service.spec?.ports?.find((p) => p.port === wanted)?.port;
    if (!port) continue;
    const addresses = [
      ...(service.status?.loadBalancer?.ingress ?? []).map((ingress) => ingress.ip ?? ingress.hostname).filter((a): a is string => !!a),
      ...(service.spec?.externalIPs ?? []),
    ];
    for (const address of addresses) {
      (networks[network] ??= { endpoints: [], gateways: [] }).gateways.push({ address, port });
      clusters.set(`${network}|${address}|${port}`, clusterId);
    }
  }
  return { networks, clusters };
}

/**
 * meshNetworks gateways named by `registryServiceName` are Services of this cluster: they take
 * that Service's load balancer addresses.
 */
function resolveRegistryServiceNames(meshNetworks: MeshNetworks, services: V1Service[], clusterId: string, domain: string): { networks: MeshNetworks; clusters: Map<string, string> } {
  const byHost = new Map(services.map((service) => [`${service.metadata?.name}.${service.metadata?.namespace}.svc.${domain}`, service]));
  const clusters = new Map<string, string>();
  const networks: MeshNetworks['networks'] = {};
  for (const [network, spec] of Object.entries(meshNetworks.networks)) {
    type Gateway = MeshNetworks['networks'][string]['gateways'][number];
    const gateways = spec.gateways.flatMap((gateway): Gateway[] => {
      if (!('registryServiceName' in gateway)) return [gateway];
      const service = byHost.get(gateway.registryServiceName);
      const addresses = [
        ...(service?.status?.loadBalancer?.ingress ?? []).map((ingress) => ingress.ip ?? ingress.hostname).filter((a): a is string => !!a),
        ...(service?.spec?.externalIPs ?? []),
      ];
      for (const address of addresses) clusters.set(`${network}|${address}|${gateway.port}`, clusterId);
      return addresses.length > 0 ? addresses.map((address) => ({ address, port: gateway.port })) : [gateway];
    });
    networks[network] = { ...spec, gateways };
  }
  return { networks: { networks }, clusters };
}

/**
 * Feeds the topology from Kubernetes: the `meshNetworks` key of the `istio` ConfigMap in the Istio
 * namespace, and gateway Services. A ConfigMap that does not parse is logged and ignored.
 */
export class KubernetesTopologyWatch {
  private readonly informers: Array<ResilientInformer<V1ConfigMap> | ResilientInformer<V1Service>>;
  private meshNetworks: MeshNetworks = { networks: {} };
  private services: V1Service[] = [];

  constructor(kubeConfig: KubeConfig, private readonly topology: NetworkTopology, private readonly options: TopologyWatchOptions, private readonly log: Logger) {
    const api = kubeConfig.makeApiClient(CoreV1Api);
    const namespace = options.istioNamespace;
    this.informers = [
      new ResilientInformer<V1ConfigMap>(kubeConfig, `/api/v1/namespaces/${namespace}/configmaps`,
        () => api.listNamespacedConfigMap({ namespace }), undefined, (maps) => this.onConfigMaps([...maps]), log, options.backoff),
      new ResilientInformer<V1Service>(kubeConfig, '/api/v1/services',
        () => api.listServiceForAllNamespaces({}), undefined, (services) => this.onServices([...services]), log, options.backoff),
    ];
  }

  async start(): Promise<void> {
    await Promise.all(this.informers.map((informer) => informer.start()));
  }

  close(): void {
    for (const informer of this.informers) informer.stop();
  }

  get restarts(): number {
    return this.informers.reduce((sum, informer) => sum + informer.restarts, 0);
  }

  private onConfigMaps(maps: V1ConfigMap[]): void {
    const text = maps.find((map) => map.metadata?.name === 'istio')?.data?.meshNetworks;
    try {
      this.meshNetworks = text ? parseMeshNetworks(text, `configmap ${this.options.istioNamespace}/istio meshNetworks`) : { networks: {} };
      this.publish();
    } catch (error) {
      this.log.error({ err: (error as Error).message }, 'meshNetworks in the istio ConfigMap is not usable; keeping the previous topology');
    }
  }

  private onServices(services: V1Service[]): void {
    this.services = services;
    this.publish();
  }

  private publish(): void {
    const configured = resolveRegistryServiceNames(this.meshNetworks, this.services, this.options.clusterId, this.options.domain);
    this.topology.set({ name: 'k8s:meshNetworks', ...configured });
    const discovered = gatewaysFromServices(this.services, this.options.clusterId);
    this.topology.set({ name: 'k8s:gateway-services', networks: { networks: discovered.networks }, clusters: discovered.clusters });
  }
}
