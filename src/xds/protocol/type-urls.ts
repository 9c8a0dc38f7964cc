export const TYPE_PREFIX = 'type.googleapis.com/';

/** The resource name that asks for every resource of a type (xds_protocol.rst, wildcard subscriptions). */
export const WILDCARD = '*';

export const TypeUrl = {
  cluster: `${TYPE_PREFIX}envoy.config.cluster.v3.Cluster`,
  endpoint: `${TYPE_PREFIX}envoy.config.endpoint.v3.ClusterLoadAssignment`,
  listener: `${TYPE_PREFIX}envoy.config.listener.v3.Listener`,
  route: `${TYPE_PREFIX}envoy.config.route.v3.RouteConfiguration`,
  secret: `${TYPE_PREFIX}envoy.extensions.transport_sockets.tls.v3.Secret`,
  extensionConfig: `${TYPE_PREFIX}envoy.config.core.v3.TypedExtensionConfig`,
  nameTable: `${TYPE_PREFIX}istio.networking.nds.v1.NameTable`,
  proxyConfig: `${TYPE_PREFIX}istio.mesh.v1alpha1.ProxyConfig`,
  healthInformation: `${TYPE_PREFIX}istio.v1.HealthInformation`,
} as const;

/**
 * istiod's debug types (pilot/pkg/xds/statusgen.go): asked for on an ADS stream by istioctl, answered
 * with the control plane's own view, never subscribed upstream.
 */
export const DebugTypeUrl = {
  syncz: 'istio.io/debug/syncz',
  clientConfig: `${TYPE_PREFIX}envoy.service.status.v3.ClientConfig`,
} as const;

export function isDebugType(typeUrl: string): boolean {
  return typeUrl.startsWith('istio.io/debug/');
}

/** Push order for make-before-break (xds_protocol "eventual consistency"; istiod's PushOrder). */
const pushOrder: readonly string[] = [
  TypeUrl.cluster,
  TypeUrl.endpoint,
  TypeUrl.listener,
  TypeUrl.route,
  TypeUrl.secret,
];

const rankOf = new Map(pushOrder.map((typeUrl, index) => [typeUrl, index]));

/** Sort key: known types in push order, everything else after them in a stable order. */
export function pushRank(typeUrl: string): number {
  return rankOf.get(typeUrl) ?? pushOrder.length;
}

/**
 * LDS and CDS are state-of-the-world in SotW: a response carries the full set and absence means
 * deletion. EDS and RDS (and named types in general) may be partial.
 */
export function isFullStateType(typeUrl: string): boolean {
  return typeUrl === TypeUrl.cluster || typeUrl === TypeUrl.listener;
}

const typeUrlShape = /^[A-Za-z0-9._-]+(\.[A-Za-z0-9_-]+)*\/[A-Za-z0-9._\/-]+$/;
export const MAX_TYPE_URL_LENGTH = 256;

/** Unknown but well-formed type URLs are passed through; malformed ones are refused. */
export function isWellFormedTypeUrl(typeUrl: string): boolean {
  return typeUrl.length > 0 && typeUrl.length <= MAX_TYPE_URL_LENGTH && typeUrlShape.test(typeUrl);
}

export function shortTypeName(typeUrl: string): string {
  switch (typeUrl) {
    case TypeUrl.cluster: return 'CDS';
    case TypeUrl.endpoint: return 'EDS';
    case TypeUrl.listener: return 'LDS';
    case TypeUrl.route: return 'RDS';
    case TypeUrl.secret: return 'SDS';
    case TypeUrl.extensionConfig: return 'ECDS';
    case TypeUrl.nameTable: return 'NDS';
    case TypeUrl.proxyConfig: return 'PCDS';
    default: return typeUrl;
  }
}
