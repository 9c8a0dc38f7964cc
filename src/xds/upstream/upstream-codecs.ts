import type { Logger } from '../../log.js';
import type { ResourceCache, ResourceUpdate } from '../cache/resource-cache.js';
import { AdsMethod, Envelopes, type NodeMessage, type RpcStatus, type XdsProtocol } from '../protocol/envelopes.js';
import { resourceName } from '../protocol/resource-name.js';
import { TypeUrl, WILDCARD, isFullStateType, shortTypeName } from '../protocol/type-urls.js';

/** A resource's bytes without a copy: the cache keeps its own (cache/resource-interner.ts). */
const bodyView = (value: Uint8Array) => Buffer.from(value.buffer, value.byteOffset, value.byteLength);

/** What the group wants from the upstream for one type. */
export interface DesiredSubscription {
  wildcard: boolean;
  names: ReadonlySet<string>;
}

/** What has been said on the current upstream stream for one type. */
export interface SentSubscription {
  wildcard: boolean;
  names: Set<string>;
  /** SotW: the last version received, echoed in every request. */
  version: string;
  /** SotW: the version before the last one, which a NACK names as the last good version. */
  previousVersion: string;
  /** The last response nonce received for this type. */
  nonce: string;
}

/** What a codec may use of the stream it speaks on. */
export interface CodecStream {
  readonly cache: ResourceCache;
  readonly log: Logger;
  /** The node, on the first request of the stream only. */
  nodeOnce(): { node?: NodeMessage };
  write(bytes: Buffer): void;
  /** Rewrites a resource as it enters the cache. */
  transformed(typeUrl: string, update: ResourceUpdate): ResourceUpdate;
  sent: Map<string, SentSubscription>;
}

/**
 * The protocol half of an upstream ADS stream: how SotW and Delta say "subscribe", "ACK",
 * "NACK" and "health". The stream itself (connect, reconnect, backoff) is the same for both.
 */
export interface UpstreamCodec {
  readonly method: string;
  /** Tells the upstream what changed from `sent` to `desired` (everything when `sent` is undefined). */
  subscribe(stream: CodecStream, typeUrl: string, desired: DesiredSubscription, sent: SentSubscription | undefined): void;
  /** Applies one response to the cache and ACKs it. */
  receive(stream: CodecStream, bytes: Buffer): void;
  nack(stream: CodecStream, typeUrl: string, sent: SentSubscription, error: RpcStatus): void;
  health(stream: CodecStream, error: RpcStatus | undefined): void;
}

/** Names per Delta subscription request sent upstream. */
const UPSTREAM_NAMES_PER_REQUEST = 1000;

function nextSent(desired: DesiredSubscription, previous: SentSubscription | undefined): SentSubscription {
  return {
    wildcard: desired.wildcard, names: new Set(desired.names),
    version: previous?.version ?? '', previousVersion: previous?.previousVersion ?? '', nonce: previous?.nonce ?? '',
  };
}

/** SotW names with a wildcard that also names resources (xds_protocol.rst, "How the client specifies what resources to return"). */
function sotwNames(sent: SentSubscription): string[] {
  return sent.wildcard && sent.names.size > 0 ? [WILDCARD, ...sent.names] : [...sent.names];
}

const deltaCodec: UpstreamCodec = {
  method: AdsMethod.delta,

  subscribe(stream, typeUrl, desired, sent) {
    const subscribe: string[] = [];
    const unsubscribe: string[] = [];
    const initialVersions: Record<string, string> = {};
    if (!sent) {
      // Legacy wildcard (empty first request) is what every Envoy and istiod understand.
      if (desired.wildcard && desired.names.size > 0) subscribe.push(WILDCARD);
      const cached = stream.cache.all(typeUrl);
      for (const resource of cached.values()) initialVersions[resource.name] = resource.version;
      // Names the cache holds first: they are what VMs are served, whatever becomes of the rest.
      for (const name of desired.names) if (cached.has(name)) subscribe.push(name);
      for (const name of desired.names) if (!cached.has(name)) subscribe.push(name);
    } else {
      if (desired.wildcard && !sent.wildcard) subscribe.push(WILDCARD);
      if (!desired.wildcard && sent.wildcard) unsubscribe.push(WILDCARD);
      for (const name of desired.names) if (!sent.names.has(name)) subscribe.push(name);
      for (const name of sent.names) if (!desired.names.has(name)) unsubscribe.push(name);
    }
    stream.sent.set(typeUrl, nextSent(desired, sent));
    // Delta subscriptions add up, so a large one goes in several requests: one giant resubscribe
    // could pass the upstream's message limit and be refused whole, every time (xds_protocol.rst,
    // "Incremental xDS"). Versions go in the first, as the protocol asks.
    let first = true;
    for (let offset = 0; first || offset < subscribe.length + unsubscribe.length; offset += UPSTREAM_NAMES_PER_REQUEST) {
      const end = offset + UPSTREAM_NAMES_PER_REQUEST;
      stream.write(Envelopes.encodeDeltaRequest({
        ...stream.nodeOnce(),
        type_url: typeUrl,
        resource_names_subscribe: subscribe.slice(offset, end),
        resource_names_unsubscribe: unsubscribe.slice(Math.max(0, offset - subscribe.length), Math.max(0, end - subscribe.length)),
        ...(first ? { initial_resource_versions: initialVersions } : {}),
      }));
      first = false;
    }
  },

  receive(stream, bytes) {
    const response = Envelopes.decodeDeltaResponse(bytes);
    const typeUrl = response.type_url;
    const updates = response.resources
      .filter((resource) => resource.resource)
      .map((resource) => stream.transformed(typeUrl, { name: resource.name, version: resource.version, body: bodyView(resource.resource!.value), typeUrl: resource.resource!.type_url }));
    const change = stream.cache.apply(typeUrl, updates, response.removed_resources, { versionInfo: response.system_version_info });
    stream.log.debug({ type: shortTypeName(typeUrl), received: updates.length, changed: change.changed.length, removed: change.removed.length }, 'upstream delta response');
    const sent = stream.sent.get(typeUrl);
    if (sent) sent.nonce = response.nonce;
    stream.write(Envelopes.encodeDeltaRequest({ type_url: typeUrl, response_nonce: response.nonce }));
  },

  nack(stream, typeUrl, sent, error) {
    stream.write(Envelopes.encodeDeltaRequest({ ...stream.nodeOnce(), type_url: typeUrl, response_nonce: sent.nonce, error_detail: error }));
  },

  health(stream, error) {
    stream.write(Envelopes.encodeDeltaRequest({ ...stream.nodeOnce(), type_url: TypeUrl.healthInformation, ...(error ? { error_detail: error } : {}) }));
  },
};

function writeSotwRequest(stream: CodecStream, typeUrl: string, sent: SentSubscription): void {
  stream.write(Envelopes.encodeRequest({
    ...stream.nodeOnce(), type_url: typeUrl, version_info: sent.version, response_nonce: sent.nonce, resource_names: sotwNames(sent),
  }));
}

const sotwCodec: UpstreamCodec = {
  method: AdsMethod.sotw,

  subscribe(stream, typeUrl, desired, sent) {
    const next = nextSent(desired, sent);
    stream.sent.set(typeUrl, next);
    writeSotwRequest(stream, typeUrl, next);
  },

  receive(stream, bytes) {
    const response = Envelopes.decodeResponse(bytes);
    const typeUrl = response.type_url;
    const sent = stream.sent.get(typeUrl) ?? nextSent({ wildcard: false, names: new Set() }, undefined);
    const updates = response.resources.map((any) => stream.transformed(typeUrl, { name: resourceName(any.type_url, any.value), body: bodyView(any.value), typeUrl: any.type_url }));
    const replaceAll = isFullStateType(typeUrl) || sent.wildcard;
    const change = stream.cache.apply(typeUrl, updates, [], { replaceAll, versionInfo: response.version_info });
    stream.log.debug({ type: shortTypeName(typeUrl), received: updates.length, changed: change.changed.length, removed: change.removed.length }, 'upstream sotw response');
    sent.previousVersion = sent.version;
    sent.version = response.version_info;
    sent.nonce = response.nonce;
    stream.sent.set(typeUrl, sent);
    writeSotwRequest(stream, typeUrl, sent);
  },

  nack(stream, typeUrl, sent, error) {
    stream.write(Envelopes.encodeRequest({
      ...stream.nodeOnce(), type_url: typeUrl, version_info: sent.previousVersion, response_nonce: sent.nonce, resource_names: sotwNames(sent), error_detail: error,
    }));
  },

  health(stream, error) {
    stream.write(Envelopes.encodeRequest({ ...stream.nodeOnce(), type_url: TypeUrl.healthInformation, ...(error ? { error_detail: error } : {}) }));
  },
};

export const upstreamCodecs: Record<XdsProtocol, UpstreamCodec> = { delta: deltaCodec, sotw: sotwCodec };
