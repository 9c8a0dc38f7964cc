import { ResourceCache, contentHash, type CachedResource, type ResourceUpdate, type TypeChange } from '../xds/cache/resource-cache.js';
import type { ResponseMemo } from '../xds/cache/response-memo.js';
import type { InterestChange } from '../xds/downstream/subscription.js';
import type { ProxyReport, XdsView } from '../xds/view.js';
import { messageType } from '../xds/protocol/protos.js';
import { TypeUrl } from '../xds/protocol/type-urls.js';
import { locateEndpoint } from './endpoint-location.js';
import type { NetworkTopology } from './network-topology.js';
import { splitHorizon, type ClusterLoadAssignmentObject } from './split-horizon.js';

const claType = () => messageType('envoy.config.endpoint.v3.ClusterLoadAssignment');

/**
 * Translates one ClusterLoadAssignment for proxies on `network` with istiod's split-horizon rules.
 * Returns the original bytes when nothing changes (no gateways anywhere).
 */
export function translateEndpoints(body: Buffer, network: string, topology: NetworkTopology): Buffer {
  const gateways = topology.gateways();
  if (gateways.length === 0) return body;
  const type = claType();
  const cla = type.toObject(type.decode(body), { longs: Number, enums: Number, defaults: false }) as ClusterLoadAssignmentObject;
  const translated = splitHorizon(cla, { proxyNetwork: network, gateways, locate: (endpoint) => locateEndpoint(endpoint, topology) });
  return Buffer.from(type.encode(type.fromObject(translated)).finish());
}

/**
 * One downstream network's view of an upstream group shared across networks (docs/SPLIT-HORIZON.md): EDS
 * is translated once per resource version for this network — never per VM — and everything else
 * passes through as the same bytes. Subscriptions and reports go to the group.
 */
export class NetworkView implements XdsView {
  readonly cache = new ResourceCache();
  /** EDS translations done, for /debug/groups and the "M per version, not N" check. */
  translations = 0;
  private readonly detach: Array<() => void> = [];

  constructor(private readonly source: XdsView, readonly network: string, private readonly topology: NetworkTopology, readonly memo: ResponseMemo) {
    this.cache.onChange((change) => this.memo.invalidate(change.typeUrl));
    for (const typeUrl of source.cache.typeUrls()) this.sync({ typeUrl, changed: [...source.cache.all(typeUrl).keys()], removed: [] });
    this.detach.push(source.cache.onChange((change) => this.sync(change)));
    this.detach.push(topology.onChange(() => this.sync({ typeUrl: TypeUrl.endpoint, changed: [...source.cache.all(TypeUrl.endpoint).keys()], removed: [] })));
  }

  changeInterest(typeUrl: string, change: InterestChange, leaving?: boolean): void {
    this.source.changeInterest(typeUrl, change, leaving);
  }

  report(event: ProxyReport): void {
    this.source.report(event);
  }

  close(): void {
    for (const detach of this.detach.splice(0)) detach();
    this.memo.clear();
  }

  private sync(change: TypeChange): void {
    const { typeUrl } = change;
    if (!this.source.cache.isInitialized(typeUrl)) return;
    const updates: ResourceUpdate[] = [];
    for (const name of change.changed) {
      const resource = this.source.cache.get(typeUrl, name);
      if (resource) updates.push(typeUrl === TypeUrl.endpoint ? this.translate(resource) : resource);
    }
    this.cache.apply(typeUrl, updates, change.removed, { versionInfo: this.source.cache.versionInfo(typeUrl) });
  }

  private translate(resource: CachedResource): ResourceUpdate {
    this.translations++;
    const body = translateEndpoints(resource.body, this.network, this.topology);
    // The version must move when only the topology changed, or Delta clients would not be sent it.
    const version = body === resource.body ? resource.version : `${resource.version}~${contentHash(body).slice(0, 8)}`;
    return { name: resource.name, version, body, typeUrl: resource.typeUrl };
  }
}
