import type { ResourceCache } from './cache/resource-cache.js';
import type { ResponseMemo } from './cache/response-memo.js';
import type { RpcStatus } from './protocol/envelopes.js';
import type { ProxyNode } from './protocol/node.js';
import type { GrpcCall } from '../transport/grpc-server.js';
import type { InterestChange } from './downstream/subscription.js';
import type { WorkloadIdentity } from '../identity.js';

/**
 * What a downstream stream reads from: a cache of resources and a memo of serialized responses,
 * plus a way to tell the source which resources are wanted. In the relay a view is an upstream
 * group; in the simulated istiod it is one rendering of the mesh.
 */
export interface XdsView {
  readonly cache: ResourceCache;
  readonly memo: ResponseMemo;
  /** `leaving`: the stream is ending, and these are all its names going at once. */
  changeInterest(typeUrl: string, change: InterestChange, leaving?: boolean): void;
  /**
   * A proxy refused config of a type, or reported its health (error undefined = healthy). A view
   * serving one proxy (stream mode) tells the upstream; a shared one keeps it to itself, so one bad
   * VM cannot starve its group (docs/XDS.md).
   */
  report(event: ProxyReport): void;
}

export type ProxyReport =
  | { kind: 'nack'; typeUrl: string; error: RpcStatus }
  | { kind: 'health'; error: RpcStatus | undefined };

export interface ViewAttachment {
  readonly view: XdsView;
  /** The aggregation key (group mode) or another label for what the stream shares. */
  readonly key: string;
  readonly mode: string;
  /**
   * Settles when the stream may be served (e.g. once its WorkloadEntry is written); a rejection
   * refuses the stream. Until then nothing is sent, as istiod registers a VM before answering it.
   */
  readonly ready?: Promise<void>;
  /** Called once when the stream ends. */
  release(): void;
}

/** Who a caller proved to be (a SPIFFE workload identity), as the CA's authenticators tell it. */
export interface CallerIdentity extends WorkloadIdentity {
  /** How to vouch for this caller to istiod (`x-forwarded-client-cert`), when it proved itself with a certificate. */
  forwardedClientCert?: string;
  /** The trusted relay (its SPIFFE ID) that carried this caller's credential, when one did. */
  relayedBy?: string;
}

/** Authenticates a stream before its first request is handled; undefined = no authentication. */
export type StreamAuthenticator = (call: GrpcCall) => Promise<CallerIdentity>;

export interface StreamIdentity {
  streamId: string;
  /** The caller's metadata as received (authorization, x-forwarded-client-cert, ...). */
  callMetadata: Record<string, string>;
  /** Set on listeners that authenticate (the TLS one). */
  caller?: CallerIdentity;
  /** Ends the stream with this error (e.g. the VM may not register its WorkloadEntry). */
  refuse(error: unknown): void;
  /** The names the stream subscribes to of a type (its group judges which cannot exist upstream). */
  subscribedNames(typeUrl: string): ReadonlySet<string>;
}

export interface ViewProvider {
  attach(node: ProxyNode, stream: StreamIdentity): ViewAttachment;
}
