import type { CachedResource } from '../cache/resource-cache.js';
import { Envelopes, type DiscoveryRequest, type XdsProtocol } from '../protocol/envelopes.js';
import { isFullStateType } from '../protocol/type-urls.js';
import { AdsSession, type ResponsePlan, type TypeState } from './ads-session.js';

/** A StreamAggregatedResources stream (state of the world). */
export class SotwSession extends AdsSession<DiscoveryRequest> {
  readonly protocol: XdsProtocol = 'sotw';

  protected readonly requestName = 'DiscoveryRequest';

  protected decode(bytes: Buffer): DiscoveryRequest {
    return Envelopes.decodeRequest(bytes);
  }

  protected nameCount(request: DiscoveryRequest): number {
    return request.resource_names.length;
  }

  protected isReconnect(request: DiscoveryRequest): boolean {
    return request.version_info !== '';
  }

  protected handleRequest(request: DiscoveryRequest): void {
    const typeUrl = request.type_url;
    const existing = this.types.get(typeUrl);
    // A request without a nonce (re)starts the subscription; one with an old nonce is stale and
    // gets no response: the client will answer the newer response we already sent (xds_protocol).
    if (existing && request.response_nonce !== '' && request.response_nonce !== existing.lastNonce) return;
    const { state } = this.typeState(typeUrl);
    if (request.response_nonce === '') {
      state.initialResponseDue = true;
      state.fullStateKey = '';
    } else if (request.error_detail) {
      this.recordNack(typeUrl, state, request.response_nonce, request.error_detail);
    } else {
      this.recordAck(state, request.version_info);
    }

    const change = state.subscription.replaceSotw(request.resource_names);
    // A changed name set must be answered, resending newly requested resources even if sent before.
    for (const name of change.added) state.forceNames.add(name);
    for (const name of change.removed) state.sent.delete(name);
    this.applyInterest(typeUrl, change);
    if (state.initialResponseDue || change.added.length > 0 || change.removed.length > 0 || change.wildcard !== 0) {
      if (change.removed.length > 0 || change.wildcard !== 0) state.fullStateKey = '';
      this.markDirty(typeUrl);
    }
  }

  protected planResponse(typeUrl: string, state: TypeState): ResponsePlan | undefined {
    const fullState = isFullStateType(typeUrl) || state.subscription.wildcard;
    const selection = fullState ? this.selectFullState(typeUrl, state) : this.selectChanged(typeUrl, state);
    if (!selection) return undefined;
    const { key, resources } = selection;
    return {
      key,
      resources,
      encode: (nonce, versionInfo) => Envelopes.encodeResponse({
        version_info: versionInfo,
        type_url: typeUrl,
        nonce,
        resources: resources.map((resource) => ({ type_url: resource.typeUrl, value: resource.body })),
      }),
      sent: () => {
        if (fullState) state.sent.clear();
        for (const resource of resources) state.sent.set(resource.name, resource.version);
        state.forceNames.clear();
      },
    };
  }

  /** LDS, CDS and wildcard subscriptions: the whole set, unless it is what the client already has. */
  private selectFullState(typeUrl: string, state: TypeState): { key: string; resources: CachedResource[] } | undefined {
    const generation = this.cache.generation(typeUrl);
    const { subscription } = state;
    let resources: CachedResource[];
    let key: string;
    if (subscription.wildcard && subscription.names.size === 0) {
      resources = [...this.cache.all(typeUrl).values()];
      key = `sotw|${generation}|*`;
    } else {
      const named = [...subscription.names].sort()
        .map((name) => this.cache.get(typeUrl, name))
        .filter((resource): resource is CachedResource => resource !== undefined);
      const extra = subscription.wildcard ? [...this.cache.all(typeUrl).values()].filter((r) => !subscription.names.has(r.name)) : [];
      resources = [...named, ...extra];
      key = `sotw|${generation}|${resources.map((r) => r.name).join(',')}`;
    }
    if (key === state.fullStateKey && !state.initialResponseDue && state.forceNames.size === 0) return undefined;
    state.fullStateKey = key;
    return { key, resources };
  }

  /** EDS, RDS and other named types: only what changed or was newly asked for (absence ≠ deletion). */
  private selectChanged(typeUrl: string, state: TypeState): { key: string; resources: CachedResource[] } | undefined {
    const resources: CachedResource[] = [];
    for (const name of state.subscription.names) {
      const resource = this.cache.get(typeUrl, name);
      if (!resource) {
        state.sent.delete(name);
        continue;
      }
      if (state.forceNames.has(name) || state.sent.get(name) !== resource.version) resources.push(resource);
    }
    if (resources.length === 0) return undefined;
    return { key: `sotw|${this.cache.generation(typeUrl)}|${resources.map((r) => r.name).join(',')}`, resources };
  }
}
