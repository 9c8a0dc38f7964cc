import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../../log.js';
import type { ResourceCache, ResourceUpdate } from '../cache/resource-cache.js';
import type { NodeMessage, RpcStatus, XdsProtocol } from '../protocol/envelopes.js';
import { upstreamCodecs, type CodecStream, type DesiredSubscription, type SentSubscription, type UpstreamCodec } from './upstream-codecs.js';
import { Backoff, type BackoffPolicy } from '../../transport/backoff.js';
import type { ConnectionPool } from './connection-pool.js';
import type { GroupCredentials } from './group-credentials.js';
import { atEndOfTurn } from '../end-of-turn.js';

/**
 * `connecting`: the stream is open but the upstream has not answered it yet (it may be unreachable
 * behind a link that accepts connections and carries nothing); `streaming`: it has answered.
 * `refused`: istiod refused every credential the group has; it waits for a member with a new one.
 */
export type UpstreamState = 'idle' | 'connecting' | 'streaming' | 'backoff' | 'refused' | 'closed';

/**
 * Statuses istiod ends a stream with that the same stream, opened again, would get again: its
 * authentication and authorization (pilot/pkg/xds/ads.go, authenticate and the identity check),
 * and requests it cannot take.
 */
const REFUSALS = new Set<number>([
  grpc.status.UNAUTHENTICATED, grpc.status.PERMISSION_DENIED, grpc.status.INVALID_ARGUMENT, grpc.status.FAILED_PRECONDITION, grpc.status.UNIMPLEMENTED,
  // A request too large for istiod (grpc-go: "received message larger than max"), or istiod's own
  // request rate limit (pilot/pkg/xds/ads.go): the group decides which it was.
  grpc.status.RESOURCE_EXHAUSTED,
]);
/** Refusals that say the credential, not the request, was wrong. */
export const CREDENTIAL_REFUSALS = new Set<number>([grpc.status.UNAUTHENTICATED, grpc.status.PERMISSION_DENIED]);

export interface UpstreamRefusal {
  code: number;
  message: string;
  at: string;
}

export type { DesiredSubscription };

export interface UpstreamStreamOptions {
  pool: ConnectionPool;
  protocol: XdsProtocol;
  node: NodeMessage;
  cache: ResourceCache;
  /** Sent on every upstream stream (e.g. a VM's own authorization in stream mode). */
  metadata?: Record<string, string>;
  /** Group mode: the members' credentials, one picked for each stream opened. */
  credentials?: GroupCredentials;
  /** istiod refused the stream with a status retrying will not change. */
  onRefused?: (refusal: UpstreamRefusal) => void;
  backoff: BackoffPolicy;
  /** Rewrites a resource as it enters the cache (SNI repair); once per group and version. */
  transform?: (typeUrl: string, update: ResourceUpdate) => ResourceUpdate;
  log: Logger;
}

export interface UpstreamStats {
  state: UpstreamState;
  protocol: XdsProtocol;
  streamsOpened: number;
  responses: number;
  bytesReceived: number;
  bytesSent: number;
  lastError: string;
  lastResponseAt: string;
  refusals: number;
  lastRefusal: UpstreamRefusal | undefined;
}

/**
 * One ADS stream to the upstream (istiod), Delta or SotW, feeding a ResourceCache. It reconnects
 * with backoff and jitter, resubscribes with the versions it holds, and ACKs every response: the
 * relay's acceptance is what the upstream hears, VMs' NACKs stay with the relay (docs/ISTIO-FACTS.md, docs/XDS.md).
 */
export class UpstreamAdsStream implements CodecStream {
  private readonly desired = new Map<string, DesiredSubscription>();
  sent = new Map<string, SentSubscription>();
  private readonly codec: UpstreamCodec;
  private stream: grpc.ClientDuplexStream<Buffer, Buffer> | undefined;
  private releaseStream: (() => void) | undefined;
  private connectionLive: () => boolean = () => false;
  private stopWaitingForConnection: () => void = () => {};
  private nodeSent = false;
  private answeredSince = 0;
  private readonly scheduleSync = atEndOfTurn(() => this.sync());
  private reconnectTimer: NodeJS.Timeout | undefined;
  private readonly backoff: Backoff;
  readonly stats: UpstreamStats;

  /** The node the next stream opens with (a group's may change: reopenAs). */
  private node: NodeMessage;

  constructor(private readonly options: UpstreamStreamOptions) {
    this.node = options.node;
    this.codec = upstreamCodecs[options.protocol];
    this.backoff = new Backoff(options.backoff);
    this.stats = {
      state: 'idle', protocol: options.protocol, streamsOpened: 0, responses: 0,
      bytesReceived: 0, bytesSent: 0, lastError: '', lastResponseAt: '', refusals: 0, lastRefusal: undefined,
    };
  }

  setDesired(typeUrl: string, desired: DesiredSubscription): void {
    this.desired.set(typeUrl, desired);
    this.scheduleSync();
  }

  /** Tells the upstream the proxy rejected the latest config of a type (stream mode only). */
  forwardNack(typeUrl: string, error: RpcStatus): void {
    const sent = this.sent.get(typeUrl);
    if (!this.stream || !sent?.nonce) return;
    this.codec.nack(this, typeUrl, sent, { code: error.code ?? 0, message: error.message ?? '' });
  }

  /** istio-agent's health report, passed on as it came (istiod writes the WorkloadEntry condition). */
  forwardHealth(error: RpcStatus | undefined): void {
    if (this.stream) this.codec.health(this, error);
  }

  start(): void {
    if (this.stats.state !== 'idle') return;
    this.open();
  }

  /**
   * Opens a new stream as another node, at once; the cache keeps serving meanwhile and the resources
   * it holds are resubscribed with their versions, so VMs get only what differs.
   */
  reopenAs(node: NodeMessage): void {
    this.node = node;
    if (this.stats.state === 'closed') return;
    clearTimeout(this.reconnectTimer);
    this.stopWaitingForConnection();
    this.endStream();
    this.open();
  }

  /** The stream is open (answered or not). */
  get isOpen(): boolean {
    return this.stats.state === 'streaming' || this.stats.state === 'connecting';
  }

  /** True while the current stream has been answered: the upstream could resend what it is asked for. */
  get live(): boolean {
    return this.stats.state === 'streaming';
  }

  /** Since when (performance.now()) the current stream has been answered; undefined while it has not. */
  get answeredAt(): number | undefined {
    return this.live ? this.answeredSince : undefined;
  }

  /** A member brought a credential: a stream waiting for one opens now. */
  credentialAdded(): void {
    if (this.stats.state === 'refused') this.open();
  }

  close(): void {
    this.enter('closed');
    clearTimeout(this.reconnectTimer);
    this.stopWaitingForConnection();
    this.endStream();
  }

  /** The one place the stream's state moves; nothing leaves `closed`. */
  private enter(state: UpstreamState): void {
    if (this.stats.state !== 'closed') this.stats.state = state;
  }

  private open(): void {
    const metadata = new grpc.Metadata();
    for (const [key, value] of Object.entries(this.options.metadata ?? {})) metadata.set(key, value);
    const { credentials } = this.options;
    if (credentials?.any) {
      const credential = credentials.pick();
      if (!credential) {
        this.enter('refused');
        this.options.log.warn({ target: this.options.pool.target }, 'no member credential istiod has not refused; waiting for a member with a new one');
        return;
      }
      for (const [key, value] of Object.entries(credential.metadata)) metadata.set(key, value);
    }
    const { stream, release, connectionLive } = this.options.pool.openStream(this.codec.method, metadata);
    this.stream = stream;
    this.releaseStream = release;
    this.connectionLive = connectionLive;
    this.sent = new Map();
    this.nodeSent = false;
    this.enter('connecting');
    this.stats.streamsOpened++;
    stream.on('data', (bytes: Buffer) => this.receive(stream, bytes));
    stream.on('error', (error: grpc.ServiceError) => this.onStreamEnd(stream, `${grpc.status[error.code] ?? error.code}: ${error.details || error.message}`, error));
    stream.on('end', () => this.onStreamEnd(stream, 'upstream ended the stream'));
    this.scheduleSync();
  }

  private onStreamEnd(stream: grpc.ClientDuplexStream<Buffer, Buffer>, reason: string, error?: grpc.ServiceError): void {
    if (stream !== this.stream) return;
    const connectionLost = !this.connectionLive();
    this.endStream();
    if (this.stats.state === 'closed') return;
    this.stats.lastError = reason;
    if (error && REFUSALS.has(error.code)) this.refused(error);
    this.enter('backoff');
    const delay = this.backoff.nextDelayMs();
    this.options.log.warn({ target: this.options.pool.target, reason, retryInMs: delay, connectionLost }, 'upstream stream ended; serving VMs from cache');
    this.reconnectTimer = setTimeout(() => this.reopenAfterBackoff(), delay);
    // The connection went (istiod restarted, or a replica left): the stream reopens as soon as there
    // is a connection again, paced by grpc-js's reconnect backoff, not after a stream backoff that
    // grows with every attempt made while it was away. A stream ended on a live connection (refused,
    // ended by istiod) waits the backoff out. The spread keeps thousands of stream-mode streams from
    // reopening in the same instant.
    if (connectionLost) {
      this.stopWaitingForConnection = this.options.pool.whenConnected(() => {
        clearTimeout(this.reconnectTimer);
        this.reconnectTimer = setTimeout(() => this.reopenAfterBackoff(), Math.random() * this.backoff.spreadMs);
      });
    }
  }

  private reopenAfterBackoff(): void {
    this.stopWaitingForConnection();
    this.open();
  }

  private refused(error: grpc.ServiceError): void {
    const refusal = { code: error.code, message: error.details || error.message, at: new Date().toISOString() };
    this.stats.refusals++;
    this.stats.lastRefusal = refusal;
    if (CREDENTIAL_REFUSALS.has(error.code)) this.options.credentials?.refuseInUse();
    this.options.log.warn({ target: this.options.pool.target, code: grpc.status[error.code], err: refusal.message }, 'istiod refused the upstream stream');
    this.options.onRefused?.(refusal);
  }

  private endStream(): void {
    const stream = this.stream;
    this.stream = undefined;
    this.releaseStream?.();
    this.releaseStream = undefined;
    if (stream) {
      stream.removeAllListeners('data');
      stream.on('error', () => {});
      stream.cancel();
    }
  }


  /** Tells the upstream about every difference between what is desired and what was said. */
  private sync(): void {
    if (!this.stream) return;
    for (const [typeUrl, desired] of this.desired) {
      const sent = this.sent.get(typeUrl);
      if (!sent && !desired.wildcard && desired.names.size === 0) continue;
      if (sent && sent.wildcard === desired.wildcard && sameNames(sent.names, desired.names)) continue;
      this.codec.subscribe(this, typeUrl, desired, sent);
    }
  }

  nodeOnce(): { node?: NodeMessage } {
    if (this.nodeSent) return {};
    this.nodeSent = true;
    return { node: this.node };
  }

  write(bytes: Buffer): void {
    this.stats.bytesSent += bytes.length;
    this.stream?.write(bytes);
  }

  private receive(stream: grpc.ClientDuplexStream<Buffer, Buffer>, bytes: Buffer): void {
    if (stream !== this.stream) return;
    this.stats.responses++;
    if (this.stats.state === 'connecting') {
      this.answeredSince = performance.now();
      this.enter('streaming');
    }
    this.stats.bytesReceived += bytes.length;
    this.stats.lastResponseAt = new Date().toISOString();
    this.backoff.reset();
    try {
      this.codec.receive(this, bytes);
    } catch (error) {
      // A response we cannot read is refused on the stream; the cache keeps its last good state.
      this.options.log.error({ err: (error as Error).message }, 'malformed upstream response; stream restarted');
      this.onStreamEnd(stream, `malformed upstream response: ${(error as Error).message}`);
    }
  }

  transformed(typeUrl: string, update: ResourceUpdate): ResourceUpdate {
    return this.options.transform ? this.options.transform(typeUrl, update) : update;
  }

  get cache(): ResourceCache {
    return this.options.cache;
  }

  get log(): Logger {
    return this.options.log;
  }
}

function sameNames(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const name of a) if (!b.has(name)) return false;
  return true;
}
