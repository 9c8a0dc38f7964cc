import { RelayError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { frameMessage } from '../../transport/grpc-framing.js';
import type { GrpcCall } from '../../transport/grpc-server.js';
import type { CachedResource, TypeChange } from '../cache/resource-cache.js';
import type { MemoizedResponse } from '../cache/response-memo.js';
import type { NodeMessage, RpcStatus, XdsProtocol } from '../protocol/envelopes.js';
import { parseNode, type ProxyNode } from '../protocol/node.js';
import { TypeUrl, isWellFormedTypeUrl, pushRank, shortTypeName } from '../protocol/type-urls.js';
import { Subscription, isEmptyChange, type InterestChange } from './subscription.js';
import type { AdmissionControl } from '../../limits/admission-control.js';
import type { PushCounters } from './push-counters.js';
import type { CallerIdentity, StreamAuthenticator, StreamIdentity, ViewAttachment, ViewProvider } from '../view.js';
import { identityMismatch } from '../../identity.js';
import { atEndOfTurn } from '../end-of-turn.js';

/**
 * A stream's life: it may wait to be authenticated (TLS listener), then for admission, then for
 * its view to be ready (auto-registration); requests arriving meanwhile are held. `admitted` is
 * `new` with admission behind it.
 */
export type SessionPhase = 'authenticating' | 'new' | 'admitting' | 'admitted' | 'attaching' | 'serving' | 'closed';
const WAITING_PHASES: ReadonlySet<SessionPhase> = new Set(['authenticating', 'admitting', 'attaching']);

export interface SessionLimits {
  maxNamesPerRequest: number;
  maxTypesPerStream: number;
  /** Admission for new streams, consulted on a stream's first request. */
  admission?: AdmissionControl;
  /** Push and NACK counts by type, for the metrics. */
  counters?: PushCounters;
}

export interface NackRecord {
  nonce: string;
  message: string;
  code: number;
  at: string;
}

/** Per stream, per type: what the client asked for and what it was sent, acked and refused. */
export class TypeState {
  readonly subscription = new Subscription();
  /** name → version the client holds, as far as we know (includes versions it NACKed). */
  readonly sent = new Map<string, string>();
  /** SotW: names to send even if sent before, because the client newly asked for them. */
  readonly forceNames = new Set<string>();
  initialResponseDue = true;
  lastNonce = '';
  fullStateKey = '';
  versionSent = '';
  versionAcked = '';
  acks = 0;
  nacks = 0;
  lastNack: NackRecord | undefined;
  /** Delta: responses not yet acknowledged, nonce → system version. */
  readonly pending = new Map<string, string>();
  /** When the oldest change not yet pushed reached the cache (performance.now()), for convergence time. */
  changedAt: number | undefined;
}

export interface HealthReport {
  healthy: boolean;
  message: string;
  at: string;
}


let sessionCounter = 0;

/** CDS, EDS, LDS, RDS: the types whose initial push order matters for make-before-break. */
const ORDERED_TYPES = 4;
const INITIAL_ORDER_WAIT_MS = 2000;
const MAX_HELD_REQUESTS = 32;
const NO_NAMES: ReadonlySet<string> = new Set();

/** One response a protocol decided to send: the base builds (once, via the memo), writes and records it. */
export interface ResponsePlan {
  /** Memo key: equal keys are byte-identical responses for every stream of the view. */
  key: string;
  resources: readonly CachedResource[];
  encode(nonce: string, versionInfo: string): Uint8Array;
  /** The protocol's own bookkeeping once the response is on its way. */
  sent(response: MemoizedResponse): void;
}

/** The fields both request envelopes share. */
export interface AdsRequest {
  node?: NodeMessage | null;
  type_url: string;
  error_detail?: RpcStatus | null;
}

/**
 * Everything SotW and Delta streams share: the node handshake, attaching to a view, per-type state,
 * dirty tracking and a flush that respects back-pressure. A stream that stops reading keeps only
 * "which types are dirty"; when it drains it is sent the latest state, never a queue of old ones.
 */
export abstract class AdsSession<Request extends AdsRequest = AdsRequest> {
  readonly id = `s${++sessionCounter}`;
  readonly connectedAt = new Date().toISOString();
  node: ProxyNode | undefined;
  attachment: ViewAttachment | undefined;
  health: HealthReport | undefined;
  readonly types = new Map<string, TypeState>();
  private readonly dirty = new Set<string>();
  private readonly scheduleFlush = atEndOfTurn(() => this.flush());
  private waitingForDrain = false;
  private detachCache: (() => void) | undefined;
  private readonly orderingDeadline = new Map<string, number>();
  abstract readonly protocol: XdsProtocol;

  /** The authenticated caller, once known (TLS listener). */
  caller: CallerIdentity | undefined;
  /** Where the stream is in its life; only `enter` changes it. */
  phase: SessionPhase = 'new';
  /** Requests that arrived while the stream waited (authentication, admission, its view); replayed in order. */
  private readonly held: Buffer[] = [];

  constructor(
    protected readonly call: GrpcCall,
    private readonly provider: ViewProvider,
    protected readonly limits: SessionLimits,
    protected readonly log: Logger,
    private readonly onEnded: (session: AdsSession) => void,
    authenticate?: StreamAuthenticator,
  ) {
    call.onMessage((bytes) => this.onMessage(bytes));
    if (authenticate) {
      this.enter('authenticating');
      authenticate(call).then((caller) => {
        this.caller = caller;
        this.enter('new');
      }, (error: unknown) => this.refuse(error));
    }
    call.onDrain(() => {
      if (!this.waitingForDrain) return;
      this.waitingForDrain = false;
      this.flush();
    });
    call.onClose(() => this.shutdown());
  }

  /** The envelope's name for error messages, e.g. DeltaDiscoveryRequest. */
  protected abstract readonly requestName: string;
  protected abstract decode(bytes: Buffer): Request;
  /** How many resource names the request carries, for the per-request limit. */
  protected abstract nameCount(request: Request): number;
  /** Handles a well-formed request of an attached stream that is not a health report. */
  protected abstract handleRequest(request: Request): void;
  /** What to send for one dirty type, by the protocol's rules; undefined when nothing is due. */
  protected abstract planResponse(typeUrl: string, state: TypeState): ResponsePlan | undefined;

  private onMessage(bytes: Buffer): void {
    if (this.phase === 'closed') return;
    if (WAITING_PHASES.has(this.phase)) this.hold(bytes);
    else this.receive(bytes);
  }

  /**
   * The one place the lifecycle moves. Leaving a waiting phase replays what was held, in order;
   * a replayed request that makes the stream wait again holds the rest behind it.
   */
  private enter(phase: SessionPhase): void {
    if (this.phase === 'closed') return;
    this.phase = phase;
    if (WAITING_PHASES.has(phase)) return;
    for (const bytes of this.held.splice(0)) this.onMessage(bytes);
  }

  private hold(bytes: Buffer): void {
    if (this.held.length >= MAX_HELD_REQUESTS) {
      this.refuse(new RelayError('MR_TOO_MANY_REQUESTS', 'too many requests before the stream was authenticated and admitted'));
      return;
    }
    this.held.push(bytes);
  }

  /** Clients that come back with the versions they hold are cheap to serve (xds_protocol). */
  protected abstract isReconnect(request: Request): boolean;

  private refuse(error: unknown): void {
    if (this.phase === 'closed') return;
    const relayError = RelayError.from(error);
    this.log.warn({ stream: this.id, node: this.node?.id, code: relayError.code, err: relayError.message }, 'refusing stream');
    this.call.fail(relayError);
    this.shutdown();
  }

  private receive(bytes: Buffer): void {
    try {
      const request = this.decodeRequest(bytes);
      const admission = this.limits.admission;
      if (this.phase === 'new' && admission) {
        // A new stream waits for admission; its requests are held and replayed in order.
        this.held.push(bytes);
        this.enter('admitting');
        admission.admit(this.isReconnect(request) ? 'reconnect' : 'new').then(() => this.enter('admitted'), (error: unknown) => this.refuse(error));
        return;
      }
      if (this.phase !== 'serving') {
        const ready = this.attach(request.node);
        if (ready) {
          // Nothing is served before the view says the stream may be; requests wait in order.
          this.held.push(bytes);
          this.enter('attaching');
          ready.then(() => this.enter('serving'), (error: unknown) => this.refuse(error));
          return;
        }
        this.enter('serving');
      }
      this.checkTypeUrl(request.type_url);
      this.checkNameCount(this.nameCount(request));
      if (this.isHealthReport(request.type_url, request.error_detail)) return;
      this.handleRequest(request);
    } catch (error) {
      this.refuse(error);
    }
  }

  private decodeRequest(bytes: Buffer): Request {
    try {
      return this.decode(bytes);
    } catch (error) {
      throw new RelayError('MR_MALFORMED_MESSAGE', `malformed ${this.requestName}: ${(error as Error).message}`);
    }
  }

  private checkTypeUrl(typeUrl: string): void {
    if (!isWellFormedTypeUrl(typeUrl)) {
      throw new RelayError('MR_BAD_TYPE_URL', `malformed type_url "${typeUrl.slice(0, 80)}"`);
    }
  }

  private checkNameCount(count: number): void {
    if (count > this.limits.maxNamesPerRequest) {
      throw new RelayError('MR_TOO_MANY_NAMES', `request names ${count} resources, over the limit of ${this.limits.maxNamesPerRequest}`);
    }
  }

  /**
   * The first request of a stream must carry the node (Envoy sends it only once). Returns what to
   * wait for before serving, if anything.
   */
  private attach(node: NodeMessage | null | undefined): Promise<void> | undefined {
    if (!node || !node.id) {
      throw new RelayError('MR_MISSING_NODE', 'the first request on a stream must carry node with a non-empty id');
    }
    this.node = parseNode(node);
    if (this.caller) checkIdentity(this.node, this.caller);
    const identity: StreamIdentity = {
      streamId: this.id, callMetadata: this.call.metadata(), refuse: (error) => this.refuse(error),
      subscribedNames: (typeUrl) => this.types.get(typeUrl)?.subscription.names ?? NO_NAMES, ...(this.caller ? { caller: this.caller } : {}),
    };
    this.attachment = this.provider.attach(this.node, identity);
    this.detachCache = this.attachment.view.cache.onChange((change) => this.onCacheChange(change));
    this.log.info({ stream: this.id, node: this.node.id, key: this.attachment.key, mode: this.attachment.mode, protocol: this.protocol }, 'proxy connected');
    return this.attachment.ready;
  }

  protected typeState(typeUrl: string): { state: TypeState; created: boolean } {
    const existing = this.types.get(typeUrl);
    if (existing) return { state: existing, created: false };
    if (this.types.size >= this.limits.maxTypesPerStream) {
      throw new RelayError('MR_TOO_MANY_TYPES', `stream subscribes to more than ${this.limits.maxTypesPerStream} types`);
    }
    const state = new TypeState();
    this.types.set(typeUrl, state);
    return { state, created: true };
  }

  protected recordAck(state: TypeState, version: string): void {
    state.acks++;
    state.versionAcked = version;
  }

  protected recordNack(typeUrl: string, state: TypeState, nonce: string, error: RpcStatus): void {
    state.nacks++;
    const counters = this.limits.counters;
    counters?.count(counters.nacks, typeUrl);
    state.lastNack = { nonce, message: error.message ?? '', code: error.code ?? 0, at: new Date().toISOString() };
    this.attachment!.view.report({ kind: 'nack', typeUrl, error });
    this.log.warn({ stream: this.id, node: this.node?.id, type: shortTypeName(typeUrl), nonce, error: state.lastNack.message }, 'proxy NACKed config');
  }

  /** istio-agent reports health as requests of type istio.v1.HealthInformation; nobody answers them. */
  private isHealthReport(typeUrl: string, error: RpcStatus | null | undefined): boolean {
    if (typeUrl !== TypeUrl.healthInformation) return false;
    this.health = { healthy: !error?.message, message: error?.message ?? '', at: new Date().toISOString() };
    this.attachment!.view.report({ kind: 'health', error: error ?? undefined });
    return true;
  }

  protected applyInterest(typeUrl: string, change: InterestChange): void {
    if (!isEmptyChange(change)) this.attachment!.view.changeInterest(typeUrl, change);
  }

  protected markDirty(typeUrl: string): void {
    this.dirty.add(typeUrl);
    this.scheduleFlush();
  }

  private onCacheChange(change: TypeChange): void {
    const state = this.types.get(change.typeUrl);
    if (!state) return;
    const { subscription } = state;
    const affected = subscription.wildcard
      || state.initialResponseDue
      || change.changed.some((name) => subscription.names.has(name))
      || change.removed.some((name) => state.sent.has(name));
    if (!affected) return;
    state.changedAt ??= performance.now();
    this.markDirty(change.typeUrl);
  }

  private flush(): void {
    if (this.phase === 'closed' || this.dirty.size === 0) return;
    if (this.call.needsDrain) {
      this.waitingForDrain = true;
      return;
    }
    const ordered = [...this.dirty].sort((a, b) => pushRank(a) - pushRank(b));
    for (const typeUrl of ordered) {
      const state = this.types.get(typeUrl);
      if (!state) {
        this.dirty.delete(typeUrl);
        continue;
      }
      if (this.mustWaitForEarlierType(typeUrl)) continue;
      this.dirty.delete(typeUrl);
      const sentBefore = state.lastNonce;
      const started = performance.now();
      const writable = this.pushType(typeUrl, state);
      const counters = this.limits.counters;
      if (state.lastNonce !== sentBefore) {
        if (counters) {
          counters.count(counters.pushes, typeUrl);
          const now = performance.now();
          counters.onPush?.(typeUrl, (now - started) / 1000, state.changedAt === undefined ? undefined : (now - state.changedAt) / 1000);
        }
        state.changedAt = undefined;
      }
      if (!writable) {
        this.waitingForDrain = true;
        return;
      }
    }
  }

  /**
   * Make-before-break on the initial push (CDS, EDS, LDS, RDS): a type waits while an earlier type
   * this stream asked for has not arrived from the source yet — bounded, so a source that never
   * answers one type cannot hold back the others.
   */
  private mustWaitForEarlierType(typeUrl: string): boolean {
    const rank = pushRank(typeUrl);
    if (rank === 0 || rank >= ORDERED_TYPES) return false;
    const waiting = [...this.types.keys()].some((other) => pushRank(other) < rank && !this.cache.isInitialized(other));
    if (!waiting) {
      this.orderingDeadline.delete(typeUrl);
      return false;
    }
    let deadline = this.orderingDeadline.get(typeUrl);
    if (deadline === undefined) {
      deadline = Date.now() + INITIAL_ORDER_WAIT_MS;
      this.orderingDeadline.set(typeUrl, deadline);
      setTimeout(() => this.markDirty(typeUrl), INITIAL_ORDER_WAIT_MS + 1).unref();
    }
    return Date.now() < deadline;
  }

  /** Builds (once per view, through the memo), writes and records one type's response; false when the stream is full or was ended. */
  private pushType(typeUrl: string, state: TypeState): boolean {
    if (!this.cache.isInitialized(typeUrl)) return true;
    const plan = this.planResponse(typeUrl, state);
    if (!plan) return true;
    if (!this.roomFor(typeUrl, plan.key, plan.resources)) return false;
    const versionInfo = this.cache.versionInfo(typeUrl);
    const response = this.memo.getOrBuild(typeUrl, plan.key, (nonce) => ({ versionInfo, frame: frameMessage(plan.encode(nonce, versionInfo)) }));
    plan.sent(response);
    state.initialResponseDue = false;
    state.lastNonce = response.nonce;
    state.versionSent = response.versionInfo;
    return this.call.writeFrame(response.frame);
  }

  /**
   * A response not built yet is charged against the buffer budget first: past it, building a large
   * response only for its stream to be ended would cost every other VM the time.
   */
  private roomFor(typeUrl: string, key: string, resources: ReadonlyArray<{ body: Buffer }>): boolean {
    if (this.memo.has(typeUrl, key)) return true;
    let bytes = 0;
    for (const resource of resources) bytes += resource.body.length;
    return this.call.reserve(bytes);
  }

  protected get cache() {
    return this.attachment!.view.cache;
  }

  protected get memo() {
    return this.attachment!.view.memo;
  }

  private shutdown(): void {
    if (this.phase === 'closed') return;
    this.enter('closed');
    this.detachCache?.();
    if (this.attachment) {
      for (const [typeUrl, state] of this.types) this.applyInterest(typeUrl, state.subscription.release());
      this.attachment.release();
      this.log.info({ stream: this.id, node: this.node?.id }, 'proxy disconnected');
    }
    this.onEnded(this);
  }
}

/**
 * istiod's PILOT_ENABLE_XDS_IDENTITY_CHECK: a proxy may only ask for the config of its own
 * namespace and service account (as its certificate or token proves them).
 */
function checkIdentity(node: ProxyNode, caller: CallerIdentity): void {
  const serviceAccount = typeof node.metadata.SERVICE_ACCOUNT === 'string' ? node.metadata.SERVICE_ACCOUNT : '';
  if (identityMismatch(caller, { namespace: node.namespace, serviceAccount })) {
    throw new RelayError('MR_PERMISSION_DENIED', `authenticated as ${caller.namespace}/${caller.serviceAccount}, but the node claims ${node.namespace || '(no namespace)'}/${serviceAccount || '(no service account)'}`);
  }
}
