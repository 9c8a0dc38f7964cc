import type { CachedResource } from '../cache/resource-cache.js';
import { Envelopes, type DeltaDiscoveryRequest, type XdsProtocol } from '../protocol/envelopes.js';
import { frameDeltaResponse } from '../protocol/response-frames.js';
import { AdsSession, TypeState, type DebugAnswer, type ResponsePlan } from './ads-session.js';

const MAX_PENDING_NONCES = 64;

/** A Delta stream's state of one type: also the responses it has not acknowledged yet. */
class DeltaTypeState extends TypeState {
  /** nonce → system version, oldest first. */
  private readonly unacknowledged = new Map<string, string>();

  awaitAck(nonce: string, version: string): void {
    if (this.unacknowledged.size >= MAX_PENDING_NONCES) this.unacknowledged.delete(this.unacknowledged.keys().next().value!);
    this.unacknowledged.set(nonce, version);
  }

  /** The version the response with this nonce carried, if it was still waiting for its ACK or NACK. */
  settle(nonce: string): string | undefined {
    const version = this.unacknowledged.get(nonce);
    this.unacknowledged.delete(nonce);
    return version;
  }
}

/** A DeltaAggregatedResources stream (incremental xDS). */
export class DeltaSession extends AdsSession<DeltaDiscoveryRequest, DeltaTypeState> {
  readonly protocol: XdsProtocol = 'delta';

  protected readonly requestName = 'DeltaDiscoveryRequest';

  protected decode(bytes: Buffer): DeltaDiscoveryRequest {
    return Envelopes.decodeDeltaRequest(bytes);
  }

  protected nameCount(request: DeltaDiscoveryRequest): number {
    return request.resource_names_subscribe.length + request.resource_names_unsubscribe.length
      + Object.keys(request.initial_resource_versions ?? {}).length;
  }

  protected isReconnect(request: DeltaDiscoveryRequest): boolean {
    return Object.keys(request.initial_resource_versions ?? {}).length > 0;
  }

  protected encodeDebugResponse(typeUrl: string, answer: DebugAnswer, nonce: string): Uint8Array {
    return Envelopes.encodeDeltaResponse({
      system_version_info: nonce, type_url: typeUrl, nonce, control_plane: { identifier: answer.controlPlane },
      resources: answer.resources.map((resource) => ({ name: resource.name, version: nonce, resource: { type_url: resource.typeUrl, value: resource.body } })),
      removed_resources: [],
    });
  }

  protected newTypeState(): DeltaTypeState {
    return new DeltaTypeState();
  }

  protected handleRequest(request: DeltaDiscoveryRequest): void {
    const typeUrl = request.type_url;
    const { state, created } = this.typeState(typeUrl);
    if (request.response_nonce) {
      const version = state.settle(request.response_nonce);
      if (request.error_detail) this.recordNack(typeUrl, state, request.response_nonce, request.error_detail);
      else if (version !== undefined) state.recordAck(version, request.response_nonce);
    }
    if (created) {
      // On reconnect the client says what it holds; we send only what differs (xds_protocol).
      for (const [name, version] of Object.entries(request.initial_resource_versions ?? {})) state.sent.set(name, version);
    }
    // Subscription changes are honoured even with a stale nonce (unlike SotW).
    const change = state.subscription.updateDelta(request.resource_names_subscribe, request.resource_names_unsubscribe, created);
    for (const name of change.removed) state.sent.delete(name);
    if (change.wildcard === -1) {
      for (const name of state.sent.keys()) if (!state.subscription.names.has(name)) state.sent.delete(name);
    }
    this.applyInterest(typeUrl, change);
    if (created || change.added.length > 0 || change.wildcard === 1) this.markDirty(typeUrl);
  }

  protected planResponse(typeUrl: string, state: DeltaTypeState): ResponsePlan | undefined {
    const { subscription } = state;
    const all = this.cache.all(typeUrl);
    const updates: CachedResource[] = [];
    const removed: string[] = [];
    // Absent means removed only where the cache is authoritative: a wildcard set, or a name the
    // source deleted. A named resource the group merely has not fetched yet is not "removed".
    const isRemoved = (name: string) => !all.has(name) && (subscription.wildcard || this.cache.wasDeleted(typeUrl, name));
    const consider = (resource: CachedResource) => {
      if (state.sent.get(resource.name) !== resource.version) updates.push(resource);
    };
    const changed = state.changedNames;
    if (changed) {
      // Only what the cache changed since the last push can differ from what the client holds.
      for (const name of changed) {
        const resource = all.get(name);
        if (resource) {
          if (subscription.wildcard || subscription.names.has(name)) consider(resource);
        } else if (state.sent.has(name) && isRemoved(name)) {
          removed.push(name);
        }
      }
    } else {
      if (subscription.wildcard) {
        for (const resource of all.values()) consider(resource);
      } else {
        for (const name of subscription.names) {
          const resource = all.get(name);
          if (resource) consider(resource);
        }
      }
      for (const name of state.sent.keys()) if (isRemoved(name)) removed.push(name);
    }
    // A wildcard subscription gets a first response even when empty, so the client can finish
    // initialising; otherwise an empty response is never sent.
    const initialWildcard = state.initialResponseDue && subscription.wildcard;
    if (updates.length === 0 && removed.length === 0 && !initialWildcard) {
      if (subscription.names.size > 0 || subscription.wildcard) state.initialResponseDue = false;
      state.changesPlanned();
      return undefined;
    }
    const generation = this.cache.generation(typeUrl);
    const everything = subscription.wildcard && removed.length === 0 && updates.length === all.size;
    return {
      key: everything ? `delta|${generation}|*` : `delta|${generation}|${updates.map((r) => r.name).join(',')}|${removed.join(',')}`,
      resources: updates,
      frame: (nonce, versionInfo) => frameDeltaResponse({ systemVersionInfo: versionInfo, typeUrl, nonce, resources: updates, removedResources: removed }),
      sent: (response) => {
        // Written: what changed so far is accounted for (a push that found no room keeps it).
        state.changesPlanned();
        for (const resource of updates) state.sent.set(resource.name, resource.version);
        for (const name of removed) state.sent.delete(name);
        state.awaitAck(response.nonce, response.versionInfo);
      },
    };
  }
}
