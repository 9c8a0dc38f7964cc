import { messageType } from '../xds/protocol/protos.js';
import { TypeUrl } from '../xds/protocol/type-urls.js';
import { clusterName, clusterSni, istioTlsMatch, packAny, plaintextMatch } from '../mesh/istio-tls.js';
import { jsonToStruct, type JsonValue } from '../xds/protocol/struct.js';
import type { ResourceUpdate } from '../xds/cache/resource-cache.js';
import { splitHorizon, type ClusterLoadAssignmentObject, type LbEndpointObject, type NetworkGateway } from '../mesh/split-horizon.js';
import { serviceHost, type MeshEndpoint, type MeshModel, type MeshService } from './mesh-model.js';

/** One rendering of the mesh: istiod computes config per proxy from these two node properties. */
export interface SimVariant {
  network: string;
  generator: 'envoy' | 'grpc';
}

type PlainObject = { [key: string]: unknown };

function encode(typeName: string, object: PlainObject): Buffer {
  const type = messageType(typeName);
  return Buffer.from(type.encode(type.fromObject(object)).finish());
}

function struct(value: { [key: string]: JsonValue }): PlainObject {
  return jsonToStruct(value) as PlainObject;
}

function sidecarCluster(service: MeshService, port: number, domain: string): PlainObject {
  const host = serviceHost(service, domain);
  const name = clusterName(port, host);
  const serviceAccounts = [...new Set(service.endpoints.map((e) => e.serviceAccount))];
  const subjectAltNames = serviceAccounts.map((sa) => `spiffe://${domain}/ns/${service.namespace}/sa/${sa}`);
  return {
    name,
    type: 'EDS',
    eds_cluster_config: { eds_config: { ads: {}, initial_fetch_timeout: { seconds: 0 }, resource_api_version: 'V3' }, service_name: name },
    connect_timeout: { seconds: 10 },
    lb_policy: 'LEAST_REQUEST',
    transport_socket_matches: [istioTlsMatch(clusterSni(port, host), subjectAltNames), plaintextMatch()],
    metadata: { filter_metadata: { istio: struct({ services: [{ host, name: service.name, namespace: service.namespace }] }) } },
  };
}

function grpcCluster(service: MeshService, port: number, domain: string): PlainObject {
  const name = clusterName(port, serviceHost(service, domain));
  return {
    name,
    type: 'EDS',
    eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' }, service_name: name },
    lb_policy: 'ROUND_ROBIN',
  };
}

function staticClusters(): PlainObject[] {
  return [
    { name: 'BlackHoleCluster', type: 'STATIC', connect_timeout: { seconds: 10 } },
    { name: 'PassthroughCluster', type: 'ORIGINAL_DST', connect_timeout: { seconds: 10 }, lb_policy: 'CLUSTER_PROVIDED' },
  ];
}

function lbEndpoint(service: MeshService, endpoint: MeshEndpoint, index: number, mesh: MeshModel): LbEndpointObject {
  const clusterId = endpoint.cluster ?? mesh.networks[endpoint.network]?.clusterId ?? 'Kubernetes';
  const workload = endpoint.workloadName ?? `${service.name}-${index}`;
  const app = endpoint.labels['app'] ?? service.name;
  const version = endpoint.labels['version'] ?? 'latest';
  const metadata: Record<string, PlainObject> = { istio: struct({ workload: `${workload};${service.namespace};${app};${version};${clusterId}` }) };
  if (endpoint.tlsMode === 'istio') metadata['envoy.transport_socket_match'] = struct({ tlsMode: 'istio' });
  return {
    endpoint: { address: { socket_address: { address: endpoint.address, port_value: endpoint.port } } },
    load_balancing_weight: { value: endpoint.weight },
    metadata: { filter_metadata: metadata },
  } as LbEndpointObject;
}

function localityOf(text: string): { region?: string; zone?: string; sub_zone?: string } {
  const [region, zone, subZone] = text.split('/');
  return { ...(region ? { region } : {}), ...(zone ? { zone } : {}), ...(subZone ? { sub_zone: subZone } : {}) };
}

function loadAssignment(service: MeshService, port: number, mesh: MeshModel, variant: SimVariant, gateways: NetworkGateway[]): ClusterLoadAssignmentObject {
  const byLocality = new Map<string, LbEndpointObject[]>();
  const locations = new Map<LbEndpointObject, { network: string; clusterId: string }>();
  service.endpoints.forEach((endpoint, index) => {
    const object = lbEndpoint(service, endpoint, index, mesh);
    locations.set(object, { network: endpoint.network, clusterId: endpoint.cluster ?? mesh.networks[endpoint.network]?.clusterId ?? '' });
    const list = byLocality.get(endpoint.locality) ?? [];
    list.push(object);
    byLocality.set(endpoint.locality, list);
  });
  const cla: ClusterLoadAssignmentObject = {
    cluster_name: clusterName(port, serviceHost(service, mesh.domain)),
    endpoints: [...byLocality].map(([locality, lbEndpoints]) => ({
      locality: localityOf(locality),
      lb_endpoints: lbEndpoints,
      load_balancing_weight: { value: lbEndpoints.reduce((sum, e) => sum + (e.load_balancing_weight?.value ?? 1), 0) },
    })),
  };
  return splitHorizon(cla, {
    proxyNetwork: variant.network,
    gateways,
    locate: (endpoint) => locations.get(endpoint) ?? { network: '', clusterId: '' },
  });
}

function httpConnectionManager(routeName: string, statPrefix: string): { type_url: string; value: Buffer } {
  return packAny('envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', {
    stat_prefix: statPrefix,
    rds: { route_config_name: routeName, config_source: { ads: {}, resource_api_version: 'V3' } },
    http_filters: [{ name: 'envoy.filters.http.router', typed_config: packAny('envoy.extensions.filters.http.router.v3.Router', {}) }],
  });
}

function sidecarListener(port: number): PlainObject {
  return {
    name: `0.0.0.0_${port}`,
    address: { socket_address: { address: '0.0.0.0', port_value: port } },
    traffic_direction: 'OUTBOUND',
    filter_chains: [{
      filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: httpConnectionManager(String(port), `outbound_0.0.0.0_${port}`) }],
    }],
    bind_to_port: { value: false },
  };
}

function tcpListener(vip: string, port: number, cluster: string): PlainObject {
  return {
    name: `${vip}_${port}`,
    address: { socket_address: { address: vip, port_value: port } },
    traffic_direction: 'OUTBOUND',
    filter_chains: [{
      filters: [{
        name: 'envoy.filters.network.tcp_proxy',
        typed_config: packAny('envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', { stat_prefix: cluster, cluster }),
      }],
    }],
    bind_to_port: { value: false },
  };
}

function grpcListener(host: string, port: number): PlainObject {
  return { name: `${host}:${port}`, api_listener: { api_listener: httpConnectionManager(`${host}:${port}`, `${host}:${port}`) } };
}

function route(name: string, hosts: Array<{ host: string; port: number; cluster: string; short: string }>): PlainObject {
  return {
    name,
    virtual_hosts: hosts.map(({ host, port, cluster, short }) => ({
      name: `${host}:${port}`,
      domains: [host, `${host}:${port}`, short, `${short}:${port}`],
      routes: [{ name: 'default', match: { prefix: '/' }, route: { cluster, timeout: { seconds: 0 } } }],
    })),
    validate_clusters: { value: false },
  };
}

function grpcRoute(host: string, port: number): PlainObject {
  return {
    name: `${host}:${port}`,
    virtual_hosts: [{
      name: `${host}:${port}`,
      domains: [host, `${host}:${port}`],
      routes: [{ match: { prefix: '' }, route: { cluster: clusterName(port, host) } }],
    }],
  };
}

export function meshGateways(mesh: MeshModel): NetworkGateway[] {
  return Object.entries(mesh.networks).flatMap(([network, spec]) =>
    spec.gateways.map((gateway) => ({ network, clusterId: gateway.cluster, address: gateway.address, port: gateway.port })));
}

/** What one service renders to for one variant: its encoded resources, and the HTTP routes it adds. */
interface ServiceRendering {
  context: string;
  resources: Array<{ typeUrl: string; update: ResourceUpdate }>;
  routes: Array<{ port: number; host: string; cluster: string; short: string }>;
}

/**
 * Renderings kept per service object. The model is immutable (a change copies the services it
 * touches), so a change re-encodes only the services it replaced, as istiod's incremental EDS push
 * regenerates only the clusters of the services an update names (pilot/pkg/xds/eds.go). Keyed
 * by variant; `context` is the mesh-wide part a rendering depends on (domain, networks).
 */
const renderings = new WeakMap<MeshService, Map<string, ServiceRendering>>();

function renderService(service: MeshService, mesh: MeshModel, variant: SimVariant, gateways: NetworkGateway[], context: string): ServiceRendering {
  const variantKey = `${variant.network}|${variant.generator}`;
  let byVariant = renderings.get(service);
  if (!byVariant) renderings.set(service, byVariant = new Map());
  const kept = byVariant.get(variantKey);
  if (kept?.context === context) return kept;
  const rendering: ServiceRendering = { context, resources: [], routes: [] };
  const add = (typeUrl: string, typeName: string, name: string, object: PlainObject) =>
    rendering.resources.push({ typeUrl, update: { name, body: encode(typeName, object) } });
  const host = serviceHost(service, mesh.domain);
  for (const { port, name: portName } of service.ports) {
    const name = clusterName(port, host);
    const cluster = variant.generator === 'grpc' ? grpcCluster(service, port, mesh.domain) : sidecarCluster(service, port, mesh.domain);
    add(TypeUrl.cluster, 'envoy.config.cluster.v3.Cluster', name, cluster);
    add(TypeUrl.endpoint, 'envoy.config.endpoint.v3.ClusterLoadAssignment', name, loadAssignment(service, port, mesh, variant, gateways) as PlainObject);
    if (variant.generator === 'grpc') {
      add(TypeUrl.listener, 'envoy.config.listener.v3.Listener', `${host}:${port}`, grpcListener(host, port));
      add(TypeUrl.route, 'envoy.config.route.v3.RouteConfiguration', `${host}:${port}`, grpcRoute(host, port));
    } else if (portName.startsWith('tcp')) {
      add(TypeUrl.listener, 'envoy.config.listener.v3.Listener', `${service.vip}_${port}`, tcpListener(service.vip, port, name));
    } else {
      rendering.routes.push({ port, host, cluster: name, short: `${service.name}.${service.namespace}` });
    }
  }
  byVariant.set(variantKey, rendering);
  return rendering;
}

/** Renders every resource of every type a proxy of this variant gets, like istiod's generators. */
export function renderMesh(mesh: MeshModel, variant: SimVariant): Map<string, ResourceUpdate[]> {
  const gateways = meshGateways(mesh);
  const context = JSON.stringify([mesh.domain, mesh.networks]);
  const out = new Map<string, ResourceUpdate[]>([[TypeUrl.cluster, []], [TypeUrl.endpoint, []], [TypeUrl.listener, []], [TypeUrl.route, []]]);
  const add = (typeUrl: string, typeName: string, name: string, object: PlainObject) =>
    out.get(typeUrl)!.push({ name, body: encode(typeName, object) });
  const routesByPort = new Map<number, Array<{ host: string; port: number; cluster: string; short: string }>>();

  if (variant.generator === 'envoy') {
    for (const cluster of staticClusters()) add(TypeUrl.cluster, 'envoy.config.cluster.v3.Cluster', cluster.name as string, cluster);
  }
  for (const service of mesh.services) {
    const rendering = renderService(service, mesh, variant, gateways, context);
    for (const { typeUrl, update } of rendering.resources) out.get(typeUrl)!.push(update);
    for (const route of rendering.routes) {
      const list = routesByPort.get(route.port) ?? [];
      list.push(route);
      routesByPort.set(route.port, list);
    }
  }
  for (const [port, hosts] of routesByPort) {
    add(TypeUrl.listener, 'envoy.config.listener.v3.Listener', `0.0.0.0_${port}`, sidecarListener(port));
    add(TypeUrl.route, 'envoy.config.route.v3.RouteConfiguration', String(port), route(String(port), hosts));
  }
  if (variant.generator === 'envoy') {
    out.set(TypeUrl.nameTable, []);
    add(TypeUrl.nameTable, 'istio.networking.nds.v1.NameTable', '', nameTable(mesh));
  }
  return out;
}

/**
 * istio-agent's DNS table, as istiod builds it for a sidecar (pkg/dns/server/name_table.go): every
 * service with a cluster IP, by host name; Kubernetes services carry their short name and
 * namespace so the agent also answers `name`, `name.ns` and `name.ns.svc`. One unnamed resource.
 */
function nameTable(mesh: MeshModel): PlainObject {
  const table: Record<string, PlainObject> = {};
  for (const service of mesh.services) {
    if (service.vip === '0.0.0.0') continue;
    table[serviceHost(service, mesh.domain)] = { ips: [service.vip], registry: 'Kubernetes', shortname: service.name, namespace: service.namespace };
  }
  return { table };
}
