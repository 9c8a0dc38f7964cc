import { metadataString, proxyAddresses, type ProxyNode } from '../xds/protocol/node.js';
import type { JsonValue } from '../xds/protocol/struct.js';

/** Istio's networking API group and the version the relay reads and writes (served since Istio 1.22). */
export const NETWORKING_GROUP = 'networking.istio.io';
export const NETWORKING_VERSION = 'v1';

/** Annotations istiod's auto-registration controller writes; the relay writes the same ones. */
export const Annotation = {
  autoRegistrationGroup: 'istio.io/autoRegistrationGroup',
  workloadController: 'istio.io/workloadController',
  connectedAt: 'istio.io/connectedAt',
  disconnectedAt: 'istio.io/disconnectedAt',
  healthChecksEnabled: 'proxy.istio.io/health-checks-enabled',
} as const;

export interface ObjectMeta {
  name: string;
  namespace: string;
  uid?: string;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: Array<{ apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }>;
}

export interface WorkloadEntrySpec {
  address?: string;
  labels?: Record<string, string>;
  ports?: Record<string, number>;
  network?: string;
  locality?: string;
  weight?: number;
  serviceAccount?: string;
}

export interface IstioCondition {
  type: string;
  status: 'True' | 'False';
  lastProbeTime: string;
  lastTransitionTime: string;
  message?: string;
}

export interface WorkloadEntry {
  apiVersion: string;
  kind: 'WorkloadEntry';
  metadata: ObjectMeta;
  spec: WorkloadEntrySpec;
  status?: { conditions?: IstioCondition[] };
}

export interface WorkloadGroup {
  metadata: ObjectMeta;
  spec: {
    metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
    template?: WorkloadEntrySpec;
  };
}

/** What auto-registration needs from a VM's node (docs/ISTIO-FACTS.md), as istiod reads it. */
export interface RegisteringProxy {
  id: string;
  group: string;
  namespace: string;
  address: string;
  network: string;
  labels: Record<string, string>;
  locality: string;
  healthChecked: boolean;
}

function stringMap(value: JsonValue | undefined): Record<string, string> {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return {};
  return Object.fromEntries(Object.entries(value).filter((entry): entry is [string, string] => typeof entry[1] === 'string'));
}

/**
 * The proxy's auto-registration facts, or undefined when it does not ask for auto-registration
 * (no AUTO_REGISTER_GROUP). Like istiod, the address is the first of INSTANCE_IPS, else the IP in
 * the node id; the locality is `region/zone/sub_zone` from the node.
 */
export function registeringProxy(node: ProxyNode): RegisteringProxy | undefined {
  const group = metadataString(node, 'AUTO_REGISTER_GROUP');
  if (!group) return undefined;
  const address = proxyAddresses(node)[0] ?? '';
  const locality = node.raw.locality;
  const localityParts = [locality?.region ?? '', locality?.zone ?? '', locality?.sub_zone ?? ''];
  while (localityParts.length > 0 && !localityParts.at(-1)) localityParts.pop();
  const proxyConfig = node.metadata.PROXY_CONFIG;
  const readinessProbe = proxyConfig && typeof proxyConfig === 'object' && !Array.isArray(proxyConfig) ? proxyConfig.readinessProbe : undefined;
  return {
    id: node.id,
    group,
    namespace: node.namespace,
    address,
    network: metadataString(node, 'NETWORK'),
    labels: stringMap(node.metadata.LABELS),
    locality: localityParts.join('/'),
    healthChecked: readinessProbe !== undefined && readinessProbe !== null,
  };
}

const MAX_NAME_LENGTH = 253;

/** istiod's name: `<group>-<address>[-<network>]` with ':' (IPv6) made '-', cut from the front to 253. */
export function workloadEntryName(proxy: Pick<RegisteringProxy, 'group' | 'address' | 'network'>): string {
  const name = [proxy.group, proxy.address.replaceAll(':', '-'), ...(proxy.network ? [proxy.network] : [])].join('-');
  return name.length > MAX_NAME_LENGTH ? name.slice(name.length - MAX_NAME_LENGTH) : name;
}

/**
 * The entry istiod would create from the WorkloadGroup: its template, the proxy's address,
 * labels merged template < group metadata < node LABELS, the group's annotations plus the
 * auto-registration one, the proxy's network and locality, and the group as controlling owner.
 */
export function workloadEntryFromGroup(name: string, proxy: RegisteringProxy, group: WorkloadGroup): WorkloadEntry {
  const template = structuredClone(group.spec.template ?? {});
  const labels = { ...template.labels, ...group.spec.metadata?.labels, ...proxy.labels };
  const annotations: Record<string, string> = { [Annotation.autoRegistrationGroup]: group.metadata.name, ...group.spec.metadata?.annotations };
  if (proxy.healthChecked) annotations[Annotation.healthChecksEnabled] = 'true';
  const spec: WorkloadEntrySpec = {
    ...template,
    address: proxy.address,
    ...(Object.keys(labels).length > 0 ? { labels } : {}),
    ...(proxy.network ? { network: proxy.network } : {}),
    ...(proxy.locality ? { locality: proxy.locality } : {}),
  };
  return {
    apiVersion: `${NETWORKING_GROUP}/${NETWORKING_VERSION}`,
    kind: 'WorkloadEntry',
    metadata: {
      name,
      namespace: proxy.namespace,
      ...(Object.keys(labels).length > 0 ? { labels } : {}),
      annotations,
      ownerReferences: [{
        apiVersion: `${NETWORKING_GROUP}/${NETWORKING_VERSION}`, kind: 'WorkloadGroup', name: group.metadata.name, uid: group.metadata.uid ?? '', controller: true,
      }],
    },
    spec,
  };
}
