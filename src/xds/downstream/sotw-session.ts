import type { CachedResource } from '../cache/resource-cache.js';
import { Envelopes, type DiscoveryRequest, type XdsProtocol } from '../protocol/envelopes.js';
import { SotwRequestDecoder } from '../protocol/request-decoder.js';
import { frameSotwResponse } from '../protocol/response-frames.js';
import { isFullStateType } from '../protocol/type-urls.js';
import { AdsSession, TypeState, type DebugAnswer, type ResponsePlan } from './ads-session.js';
import type { InterestChange } from './subscription.js';

const NO_CHANGE: InterestChange = Object.freeze({ wildcard: 0, added: [], removed: [] });

/** A SotW stream's state of one type: also what must be resent, and the full set it last got. */
class SotwTypeState extends TypeState {
  /** Names to send even if sent before, because the client newly asked for them. */
  readonly forceNames = new Set<string>();
  /** The memo key of the last full-state response (LDS, CDS, wildcard), to skip resending it unchanged. */
  private fullStateKey = '';
  /** The name list of the last request, as the decoder gave it. */
  lastRequested: readonly string[] | undefined;

  /** A request without a nonce (re)starts the subscription: everything is due again. */
  restart(): void {
    this.initialResponseDue = true;
    this.fullStateKey = '';
  }

  /** The client's name set changed; whether that must be answered. */
  accept(change: InterestChange): boolean {
    // A changed name set must be answered, resending newly requested resources even if sent before.
    for (const name of change.added) this.forceNames.add(name);
    for (const name of change.removed) this.sent.delete(name);
    if (change.removed.length > 0 || change.wildcard !== 0) this.fullStateKey = '';
    return this.initialResponseDue || change.added.length > 0 || change.removed.length > 0 || change.wildcard !== 0;
  }

  /** Whether a full-state response with this key is due; remembers it as sent when so. */
  fullStateDue(key: string): boolean {
    if (key === this.fullStateKey && !this.initialResponseDue && this.forceNames.size === 0) return false;
    this.fullStateKey = key;
    return true;
  }

  /** A response went out with these resources (all of them, for a full-state type). */
  delivered(resources: readonly CachedResource[], fullState: boolean): void {
    if (fullState) this.sent.clear();
    for (const resource of resources) this.sent.set(resource.name, resource.version);
    this.forceNames.clear();
  }
}

/** A StreamAggregatedResources stream (state of the world). */
export class SotwSession extends AdsSession<DiscoveryRequest, SotwTypeState> {
  readonly protocol: XdsProtocol = 'sotw';

  protected readonly requestName = 'DiscoveryRequest';

  private readonly requestDecoder = new SotwRequestDecoder();

  protected decode(bytes: Buffer): DiscoveryRequest {
    return this.requestDecoder.decode(bytes);
  }

  protected nameCount(request: DiscoveryRequest): number {
    return request.resource_names.length;
  }

  protected isReconnect(request: DiscoveryRequest): boolean {
    return request.version_info !== '';
  }

  protected encodeDebugResponse(typeUrl: string, answer: DebugAnswer, nonce: string): Uint8Array {
    return Envelopes.encodeResponse({
      version_info: nonce, type_url: typeUrl, nonce, control_plane: { identifier: answer.controlPlane },
      resources: answer.resources.map((resource) => ({ type_url: resource.typeUrl, value: resource.body })),
    });
  }

  protected newTypeState(): SotwTypeState {
    return new SotwTypeState();
  }

  protected handleRequest(request: DiscoveryRequest): void {
    const typeUrl = request.type_url;
    const existing = this.types.get(typeUrl);
    // A request without a nonce (re)starts the subscription; one with an old nonce is stale and
    // gets no response: the client will answer the newer response we already sent (xds_protocol).
    if (existing && request.response_nonce !== '' && request.response_nonce !== existing.lastNonce) return;
    const { state } = this.typeState(typeUrl);
    if (request.response_nonce === '') state.restart();
    else if (request.error_detail) this.recordNack(typeUrl, state, request.response_nonce, request.error_detail);
    else state.recordAck(request.version_info, request.response_nonce);

    // Byte-identical name lists decode to the same frozen array (protocol/request-decoder.ts): an
    // ACK repeating the list it sent last changes nothing, without comparing 300 names again.
    const sameNames = request.resource_names === state.lastRequested && request.response_nonce !== '';
    state.lastRequested = request.resource_names;
    const change = sameNames ? NO_CHANGE : state.subscription.replaceSotw(request.resource_names);
    const due = state.accept(change);
    this.applyInterest(typeUrl, change);
    if (due) this.markDirty(typeUrl);
  }

  protected planResponse(typeUrl: string, state: SotwTypeState): ResponsePlan | undefined {
    const fullState = isFullStateType(typeUrl) || state.subscription.wildcard;
    const selection = fullState ? this.selectFullState(typeUrl, state) : this.selectChanged(typeUrl, state);
    if (!selection) return undefined;
    const { key, resources } = selection;
    return {
      key,
      resources,
      frame: (nonce, versionInfo) => frameSotwResponse({ versionInfo, typeUrl, nonce, resources }),
      sent: () => state.delivered(resources, fullState),
    };
  }

  /** LDS, CDS and wildcard subscriptions: the whole set, unless it is what the client already has. */
  private selectFullState(typeUrl: string, state: SotwTypeState): { key: string; resources: CachedResource[] } | undefined {
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
    return state.fullStateDue(key) ? { key, resources } : undefined;
  }

  /** EDS, RDS and other named types: only what changed or was newly asked for (absence ≠ deletion). */
  private selectChanged(typeUrl: string, state: SotwTypeState): { key: string; resources: CachedResource[] } | undefined {
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
