import type { JsonValue } from '../xds/protocol/struct.js';
import { jsonToStruct, structToJson, type ProtoStruct } from '../xds/protocol/struct.js';

/** ClusterLoadAssignment pieces in protobufjs object form (keepCase), as far as translation needs. */
export interface LbEndpointObject {
  endpoint?: { address?: { socket_address?: { address?: string; port_value?: number } } } | null;
  load_balancing_weight?: { value?: number } | null;
  metadata?: { filter_metadata?: Record<string, ProtoStruct> } | null;
  [field: string]: unknown;
}

export interface LocalityLbEndpointsObject {
  locality?: { region?: string; zone?: string; sub_zone?: string } | null;
  lb_endpoints?: LbEndpointObject[];
  load_balancing_weight?: { value?: number } | null;
  [field: string]: unknown;
}

export interface ClusterLoadAssignmentObject {
  cluster_name: string;
  endpoints?: LocalityLbEndpointsObject[];
  [field: string]: unknown;
}

export interface NetworkGateway {
  network: string;
  clusterId: string;
  address: string;
  port: number;
}

/** Where an endpoint lives, as the caller resolved it (pod label, registry, CIDR, metadata…). */
export interface EndpointLocation {
  network: string;
  clusterId: string;
}

export interface SplitHorizonInput {
  proxyNetwork: string;
  gateways: readonly NetworkGateway[];
  locate: (endpoint: LbEndpointObject) => EndpointLocation;
}

const TLS_MODE_KEY = 'envoy.transport_socket_match';

export function endpointTlsMode(endpoint: LbEndpointObject): string {
  const fields = structToJson(endpoint.metadata?.filter_metadata?.[TLS_MODE_KEY]);
  return typeof fields.tlsMode === 'string' ? fields.tlsMode : '';
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

function lcm(values: Iterable<number>): number {
  let result = 1;
  for (const value of values) if (value > 0) result = (result * value) / gcd(result, value);
  return result;
}

/**
 * istiod's EndpointsByNetworkFilter (DESIGN §5): endpoints on the proxy's network (or a network with
 * no gateway) stay; remote mTLS endpoints become their network's gateways on 15443 with their weight
 * split evenly and summed per gateway; remote plaintext endpoints are dropped. Weights are scaled by
 * the LCM of gateway counts so every split is whole.
 */
export function splitHorizon(cla: ClusterLoadAssignmentObject, input: SplitHorizonInput): ClusterLoadAssignmentObject {
  if (input.gateways.length === 0) return cla;
  const byNetwork = new Map<string, NetworkGateway[]>();
  const byNetworkCluster = new Map<string, NetworkGateway[]>();
  for (const gateway of input.gateways) {
    push(byNetwork, gateway.network, gateway);
    push(byNetworkCluster, `${gateway.network}/${gateway.clusterId}`, gateway);
  }
  const scale = lcm([...[...byNetwork.values()].map((g) => g.length), ...[...byNetworkCluster.values()].map((g) => g.length)]);

  const endpoints: LocalityLbEndpointsObject[] = [];
  for (const locality of cla.endpoints ?? []) {
    const kept: LbEndpointObject[] = [];
    const gatewayWeights = new Map<NetworkGateway, number>();
    for (const endpoint of locality.lb_endpoints ?? []) {
      const weight = (endpoint.load_balancing_weight?.value || 1) * scale;
      const location = input.locate(endpoint);
      const networkGateways = byNetwork.get(location.network) ?? [];
      if (!location.network || !input.proxyNetwork || location.network === input.proxyNetwork || networkGateways.length === 0) {
        kept.push({ ...endpoint, load_balancing_weight: { value: weight } });
        continue;
      }
      if (endpointTlsMode(endpoint) !== 'istio') continue;
      const gateways = byNetworkCluster.get(`${location.network}/${location.clusterId}`) ?? networkGateways;
      const share = Math.floor(weight / gateways.length);
      for (const gateway of gateways) gatewayWeights.set(gateway, (gatewayWeights.get(gateway) ?? 0) + share);
    }
    const sortedGateways = [...gatewayWeights.keys()].sort((a, b) => a.address.localeCompare(b.address) || a.port - b.port);
    for (const gateway of sortedGateways) kept.push(gatewayEndpoint(gateway, Math.max(1, gatewayWeights.get(gateway)!)));
    if (kept.length === 0) continue;
    const total = kept.reduce((sum, endpoint) => sum + (endpoint.load_balancing_weight?.value ?? 1), 0);
    endpoints.push({ ...locality, lb_endpoints: kept, load_balancing_weight: { value: total } });
  }
  return { ...cla, endpoints };
}

function gatewayEndpoint(gateway: NetworkGateway, weight: number): LbEndpointObject {
  const metadata: Record<string, { [key: string]: JsonValue }> = {
    [TLS_MODE_KEY]: { tlsMode: 'istio' },
    istio: { workload: `;;;;${gateway.clusterId}` },
  };
  return {
    endpoint: { address: { socket_address: { address: gateway.address, port_value: gateway.port } } },
    load_balancing_weight: { value: weight },
    metadata: { filter_metadata: Object.fromEntries(Object.entries(metadata).map(([key, value]) => [key, jsonToStruct(value)])) },
  };
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}
