import type { NodeMessage } from './envelopes.js';
import { structToJson, type JsonValue } from './struct.js';

/** What the relay knows of a proxy from the node it sent on its stream's first request. */
export interface ProxyNode {
  id: string;
  /** sidecar, router, waypoint, ztunnel — or '' when the id is not in Istio's format. */
  proxyType: string;
  ip: string;
  name: string;
  namespace: string;
  metadata: { [key: string]: JsonValue };
  /** The node message exactly as received, to send upstream as it is. */
  raw: NodeMessage;
}

/** Parses `TYPE~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local` (docs/ISTIO-FACTS.md); other ids are kept whole. */
export function parseNode(raw: NodeMessage): ProxyNode {
  const id = raw.id ?? '';
  const metadata = structToJson(raw.metadata ?? undefined);
  const parts = id.split('~');
  const istioShaped = parts.length === 4;
  const podAndNamespace = istioShaped ? parts[2]! : '';
  const dot = podAndNamespace.lastIndexOf('.');
  const metaNamespace = typeof metadata.NAMESPACE === 'string' ? metadata.NAMESPACE : '';
  return {
    id,
    proxyType: istioShaped ? parts[0]! : '',
    ip: istioShaped ? parts[1]! : '',
    name: dot > 0 ? podAndNamespace.slice(0, dot) : podAndNamespace,
    namespace: metaNamespace || (dot > 0 ? podAndNamespace.slice(dot + 1) : ''),
    metadata,
    raw,
  };
}

export function metadataString(node: ProxyNode, key: string): string {
  const value = node.metadata[key];
  return typeof value === 'string' ? value : value === undefined || value === null ? '' : JSON.stringify(value);
}

/** The proxy's addresses as istiod takes them: INSTANCE_IPS, else the IP in its node id. */
export function proxyAddresses(node: ProxyNode): string[] {
  const listed = typeof node.metadata.INSTANCE_IPS === 'string' ? node.metadata.INSTANCE_IPS.split(',').map((ip) => ip.trim()).filter(Boolean) : [];
  return listed.length > 0 ? listed : node.ip ? [node.ip] : [];
}
