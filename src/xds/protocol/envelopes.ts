import { messageType } from './protos.js';
import type { ProtoStruct } from './struct.js';

/**
 * Envelope shapes as protobufjs decodes them (keepCase). Resources stay as Any bytes: the relay
 * decodes a resource only to transform it (docs/ISTIO-FACTS.md).
 */
/** The two ADS variants: state of the world and incremental (Delta). */
export type XdsProtocol = 'sotw' | 'delta';

export interface AnyMessage {
  type_url: string;
  value: Buffer;
}

export interface RpcStatus {
  code?: number;
  message?: string;
}

export interface NodeMessage {
  id?: string;
  cluster?: string;
  metadata?: ProtoStruct | null;
  locality?: { region?: string; zone?: string; sub_zone?: string } | null;
  user_agent_name?: string;
  [field: string]: unknown;
}

export interface DiscoveryRequest {
  version_info: string;
  node?: NodeMessage | null;
  resource_names: string[];
  type_url: string;
  response_nonce: string;
  error_detail?: RpcStatus | null;
}

export interface DiscoveryResponse {
  version_info: string;
  resources: AnyMessage[];
  type_url: string;
  nonce: string;
  control_plane?: { identifier?: string } | null;
}

export interface DeltaResource {
  name: string;
  version: string;
  resource?: AnyMessage | null;
  aliases?: string[];
}

export interface DeltaDiscoveryRequest {
  node?: NodeMessage | null;
  type_url: string;
  resource_names_subscribe: string[];
  resource_names_unsubscribe: string[];
  initial_resource_versions: Record<string, string>;
  response_nonce: string;
  error_detail?: RpcStatus | null;
}

export interface DeltaDiscoveryResponse {
  system_version_info: string;
  resources: DeltaResource[];
  type_url: string;
  removed_resources: string[];
  nonce: string;
  control_plane?: { identifier?: string } | null;
}

const discoveryRequestType = () => messageType('envoy.service.discovery.v3.DiscoveryRequest');
const discoveryResponseType = () => messageType('envoy.service.discovery.v3.DiscoveryResponse');
const deltaRequestType = () => messageType('envoy.service.discovery.v3.DeltaDiscoveryRequest');
const deltaResponseType = () => messageType('envoy.service.discovery.v3.DeltaDiscoveryResponse');

/** Encoders and decoders for the four ADS envelopes; decode throws on malformed bytes. */
export const Envelopes = {
  decodeRequest: (bytes: Uint8Array) => discoveryRequestType().decode(bytes) as unknown as DiscoveryRequest,
  encodeRequest: (message: Partial<DiscoveryRequest>) => Buffer.from(discoveryRequestType().encode(message).finish()),
  decodeResponse: (bytes: Uint8Array) => discoveryResponseType().decode(bytes) as unknown as DiscoveryResponse,
  encodeResponse: (message: Partial<DiscoveryResponse>) => Buffer.from(discoveryResponseType().encode(message).finish()),
  decodeDeltaRequest: (bytes: Uint8Array) => deltaRequestType().decode(bytes) as unknown as DeltaDiscoveryRequest,
  encodeDeltaRequest: (message: Partial<DeltaDiscoveryRequest>) => Buffer.from(deltaRequestType().encode(message).finish()),
  decodeDeltaResponse: (bytes: Uint8Array) => deltaResponseType().decode(bytes) as unknown as DeltaDiscoveryResponse,
  encodeDeltaResponse: (message: Partial<DeltaDiscoveryResponse>) => Buffer.from(deltaResponseType().encode(message).finish()),
};

export const AdsMethod = {
  sotw: '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources',
  delta: '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources',
} as const;
