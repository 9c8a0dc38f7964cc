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
 * istiod's EndpointsByNetworkFilter (docs/SPLIT-HORIZON.md): endpoints on the proxy's network (or a network with
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
      const weight = scaledWeight(endpoint.load_balancing_weight?.value, scale);
      const location = input.locate(endpoint);
      const gateways = byNetworkCluster.get(`${location.network}/${location.clusterId}`) ?? byNetwork.get(location.network) ?? [];
      // Reachable directly: the proxy's own network (an empty network matches any), or a network
      // without gateways.
      if (!location.network || !input.proxyNetwork || location.network === input.proxyNetwork || gateways.length === 0) {
        kept.push(weight === endpoint.load_balancing_weight?.value ? endpoint : { ...endpoint, load_balancing_weight: { value: weight } });
        continue;
      }
      // The gateway routes by SNI, which only Istio mTLS carries.
      if (endpointTlsMode(endpoint) !== 'istio') continue;
      const share = Math.floor(weight / gateways.length);
      for (const gateway of gateways) gatewayWeights.set(gateway, (gatewayWeights.get(gateway) ?? 0) + share);
    }
    const sortedGateways = [...gatewayWeights.keys()].sort(compareGateways);
    for (const gateway of sortedGateways) kept.push(gatewayEndpoint(gateway, Math.max(1, gatewayWeights.get(gateway)!)));
    // istiod keeps a locality even when nothing in it is left, with no weight.
    const total = kept.reduce((sum, endpoint) => sum + (endpoint.load_balancing_weight?.value ?? 0), 0);
    const { load_balancing_weight: _dropped, ...rest } = locality;
    endpoints.push(total > 0 ? { ...rest, lb_endpoints: kept, load_balancing_weight: { value: Math.min(total, MAX_UINT32) } } : { ...rest, lb_endpoints: kept });
  }
  return { ...cla, endpoints };
}

const MAX_UINT32 = 0xffffffff;

/** A missing or zero weight counts as 1; scaling clips at the uint32 maximum, as istiod does. */
function scaledWeight(weight: number | undefined, scale: number): number {
  if (!weight) return scale;
  return weight < MAX_UINT32 / scale ? weight * scale : MAX_UINT32;
}

const byteOrder = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);

/** Gateways in a deterministic order: address, then port (then network and cluster). */
function compareGateways(a: NetworkGateway, b: NetworkGateway): number {
  return byteOrder(a.address, b.address) || a.port - b.port || byteOrder(a.network, b.network) || byteOrder(a.clusterId, b.clusterId);
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
