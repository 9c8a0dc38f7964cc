import { RelayError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { GrpcCall } from '../../transport/grpc-server.js';
import type { CachedResource, TypeChange } from '../cache/resource-cache.js';
import { gzippedFrame, type MemoizedResponse } from '../cache/response-memo.js';
import type { NodeMessage, RpcStatus, XdsProtocol } from '../protocol/envelopes.js';
import { parseNode, type ProxyNode } from '../protocol/node.js';
import { TypeUrl, isDebugType, isWellFormedTypeUrl, shortTypeName } from '../protocol/type-urls.js';
import { Subscription, isEmptyChange, type InterestChange } from './subscription.js';
import type { AdmissionControl } from '../../limits/admission-control.js';
import type { PushCounters } from './push-counters.js';
import type { CallerIdentity, StreamAuthenticator, StreamIdentity, ViewAttachment, ViewProvider } from '../view.js';
import { identityMismatch } from '../../identity.js';
import { PushScheduler } from './push-scheduler.js';
import { StreamGate, type SessionPhase } from './stream-gate.js';

export interface SessionLimits {
  maxNamesPerRequest: number;
  maxTypesPerStream: number;
  /** Admission for new streams, consulted on a stream's first request. */
  admission?: AdmissionControl;
  /** Push and NACK counts by type, for the metrics. */
  counters?: PushCounters;
  /** Whether to gzip responses to this caller, when it accepts gzip (a relay's thin link). */
  compressFor?: (caller: CallerIdentity | undefined) => boolean;
  /** Answers istiod's debug types (istioctl proxy-status) for an authenticated caller. */
  debug?: (typeUrl: string, caller: CallerIdentity) => DebugAnswer | Promise<DebugAnswer>;
}

/** What a debug request is answered with, and who answers (DiscoveryResponse.control_plane). */
export interface DebugAnswer {
  resources: Array<{ name: string; typeUrl: string; body: Buffer }>;
  controlPlane: string;
}

export interface NackRecord {
  nonce: string;
  message: string;
  code: number;
  at: string;
}

/**
 * Per stream, per type: what the client asked for and what it was sent, acked and refused. Each
 * protocol extends it with its own bookkeeping, behind its own methods.
 */
export class TypeState {
  readonly subscription = new Subscription();
  /** name → version the client holds, as far as we know (includes versions it NACKed). */
  readonly sent = new Map<string, string>();
  initialResponseDue = true;
  lastNonce = '';
  nonceAcked = '';
  /** When the last response of this type was written (epoch ms: no Date per push on the fan-out path). */
  sentAt: number | undefined;
  versionSent = '';
  versionAcked = '';
  acks = 0;
  nacks = 0;
  lastNack: NackRecord | undefined;
  /** When the oldest change not yet pushed reached the cache (performance.now()), for convergence time. */
  changedAt: number | undefined;
  /**
   * The names the cache changed since the last push was planned, or undefined when a push must look
   * at every name (a new or changed subscription, or more changes than are worth listing). A push
   * after one endpoint changed then looks at that one name, not at every name the stream holds.
   */
  private changes: Set<string> | undefined;

  get changedNames(): ReadonlySet<string> | undefined {
    return this.changes;
  }

  /** Names the cache changed or removed; with no names, everything is to be looked at again. */
  noteChanges(...names: ReadonlyArray<readonly string[]>): void {
    if (names.length === 0) {
      this.changes = undefined;
      return;
    }
    const changes = this.changes;
    if (!changes) return;
    for (const list of names) for (const name of list) changes.add(name);
    if (changes.size > MAX_LISTED_CHANGES) this.changes = undefined;
  }

  /** A push was planned from what had changed: collecting starts again. */
  changesPlanned(): void {
    if (this.changes) this.changes.clear();
    else this.changes = new Set();
  }

  recordAck(version: string, nonce: string): void {
    this.acks++;
    this.versionAcked = version;
    this.nonceAcked = nonce;
  }

  recordNack(nonce: string, error: RpcStatus): NackRecord {
    this.nacks++;
    return this.lastNack = { nonce, message: error.message ?? '', code: error.code ?? 0, at: new Date().toISOString() };
  }
}

export interface HealthReport {
  healthy: boolean;
  message: string;
  at: string;
}


let sessionCounter = 0;

/** Past this many changed names a push looks at every name anyway. */
const MAX_LISTED_CHANGES = 1024;

const NO_NAMES: ReadonlySet<string> = new Set();
const MAX_HELD_DEBUG_NONCES = 16;

/** One response a protocol decided to send: the base builds (once, via the memo), writes and records it. */
export interface ResponsePlan {
  /** Memo key: equal keys are byte-identical responses for every stream of the view. */
  key: string;
  resources: readonly CachedResource[];
  /** The response framed for the wire (protocol/response-frames.ts). */
  frame(nonce: string, versionInfo: string): Buffer;
  /** The protocol's own bookkeeping once the response is on its way. */
  sent(response: MemoizedResponse): void;
}

/** The fields both request envelopes share. */
export interface AdsRequest {
  node?: NodeMessage | null;
  type_url: string;
  response_nonce: string;
  error_detail?: RpcStatus | null;
}

/**
 * Everything SotW and Delta streams share: the node handshake, attaching to a view, per-type state
 * and ACK/NACK records, and building each response once per view. Before it may speak a stream
 * passes its gate (`StreamGate`); when its types are pushed is the scheduler's (`PushScheduler`).
 */
export abstract class AdsSession<Request extends AdsRequest = AdsRequest, State extends TypeState = TypeState> {
  readonly id = `s${++sessionCounter}`;
  readonly connectedAt = new Date().toISOString();
  node: ProxyNode | undefined;
  attachment: ViewAttachment | undefined;
  health: HealthReport | undefined;
  readonly types = new Map<string, State>();
  abstract readonly protocol: XdsProtocol;
  /** The authenticated caller, once known (TLS listener). */
  caller: CallerIdentity | undefined;
  private readonly gate = new StreamGate((bytes) => this.receive(bytes), (error) => this.refuse(error));
  private readonly scheduler: PushScheduler;
  private detachCache: (() => void) | undefined;
  private debugResponses = 0;
  /** Debug responses sent and not acknowledged yet. */
  private readonly debugNonces = new Set<string>();
  /** Responses go gzip-compressed (decided when the stream attaches, before anything is sent). */
  private gzip = false;

  constructor(
    protected readonly call: GrpcCall,
    private readonly provider: ViewProvider,
    protected readonly limits: SessionLimits,
    protected readonly log: Logger,
    private readonly onEnded: (session: AdsSession) => void,
    authenticate?: StreamAuthenticator,
  ) {
    this.scheduler = new PushScheduler({
      get full() { return call.needsDrain; },
      types: () => this.types.keys(),
      isInitialized: (typeUrl) => this.cache.isInitialized(typeUrl),
      push: (typeUrl) => this.push(typeUrl),
    });
    call.onMessage((bytes) => this.gate.receive(bytes));
    if (authenticate) this.gate.wait('authenticating', authenticate(call).then((caller) => { this.caller = caller; }), 'new');
    call.onDrain(() => this.scheduler.drained());
    call.onClose(() => this.shutdown());
  }

  /** Where the stream is in its life (shown on /debug/syncz). */
  get phase(): SessionPhase {
    return this.gate.phase;
  }

  /** The envelope's name for error messages, e.g. DeltaDiscoveryRequest. */
  protected abstract readonly requestName: string;
  protected abstract decode(bytes: Buffer): Request;
  /** How many resource names the request carries, for the per-request limit. */
  protected abstract nameCount(request: Request): number;
  /** Clients that come back with the versions they hold are cheap to serve (xds_protocol). */
  protected abstract isReconnect(request: Request): boolean;
  protected abstract newTypeState(): State;
  /** Handles a well-formed request of an attached stream that is not a health report. */
  protected abstract handleRequest(request: Request): void;
  /** A response to a debug request, in the protocol's envelope. */
  protected abstract encodeDebugResponse(typeUrl: string, answer: DebugAnswer, nonce: string): Uint8Array;
  /** What to send for one dirty type, by the protocol's rules; undefined when nothing is due. */
  protected abstract planResponse(typeUrl: string, state: State): ResponsePlan | undefined;

  private refuse(error: unknown): void {
    if (this.gate.closed) return;
    const relayError = RelayError.from(error);
    this.log.warn({ stream: this.id, node: this.node?.id, code: relayError.code, err: relayError.message }, 'refusing stream');
    this.call.fail(relayError);
    this.shutdown();
  }

  private receive(bytes: Buffer): void {
    try {
      const request = this.decodeRequest(bytes);
      const admission = this.limits.admission;
      if (this.gate.phase === 'new' && admission) {
        this.gate.wait('admitting', admission.admit(this.isReconnect(request) ? 'reconnect' : 'new'), 'admitted', bytes);
        return;
      }
      if (isDebugType(request.type_url)) {
        this.answerDebug(request);
        return;
      }
      if (this.gate.phase !== 'serving') {
        const ready = this.attach(request.node);
        // Nothing is served before the view says the stream may be; requests wait in order.
        if (ready) {
          this.gate.wait('attaching', ready, 'serving', bytes);
          return;
        }
        this.gate.enter('serving');
      }
      this.checkTypeUrl(request.type_url);
      this.checkNameCount(this.nameCount(request));
      if (this.isHealthReport(request.type_url, request.error_detail)) return;
      this.handleRequest(request);
    } catch (error) {
      this.refuse(error);
    }
  }

  /**
   * istioctl's debug requests (istiod's StatusGen): answered from this relay's own state, to
   * authenticated callers only, and never attaching the stream to a view.
   */
  private answerDebug(request: Request): void {
    // istioctl's first request carries a nonce of its own (pkg/adsc): only one we sent is an ACK.
    if (this.debugNonces.delete(request.response_nonce)) return;
    if (!this.caller) throw new RelayError('MR_UNAUTHENTICATED', 'authentication required: debug types are served on the TLS listener to authenticated callers (istiod: ENABLE_DEBUG_ENDPOINT_AUTH)');
    const caller = this.caller;
    // With workers, the answer covers every worker's VMs, which takes a round trip to the others.
    Promise.resolve(this.limits.debug?.(request.type_url, caller) ?? { resources: [], controlPlane: '' }).then((answer) => {
      if (this.call.closed) return;
      this.log.debug({ stream: this.id, type: request.type_url, caller: `${caller.namespace}/${caller.serviceAccount}`, resources: answer.resources.length }, 'answered a debug request');
      const nonce = `debug-${this.id}-${++this.debugResponses}`;
      if (this.debugNonces.size >= MAX_HELD_DEBUG_NONCES) this.debugNonces.clear();
      this.debugNonces.add(nonce);
      this.call.writeMessage(this.encodeDebugResponse(request.type_url, answer, nonce));
    }, (error: unknown) => this.refuse(error));
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
    this.gzip = (this.limits.compressFor?.(this.caller) ?? false) && this.call.useGzip();
    this.detachCache = this.attachment.view.cache.onChange((change) => this.onCacheChange(change));
    this.log.info({ stream: this.id, node: this.node.id, key: this.attachment.key, mode: this.attachment.mode, protocol: this.protocol }, 'proxy connected');
    return this.attachment.ready;
  }

  protected typeState(typeUrl: string): { state: State; created: boolean } {
    const existing = this.types.get(typeUrl);
    if (existing) return { state: existing, created: false };
    if (this.types.size >= this.limits.maxTypesPerStream) {
      throw new RelayError('MR_TOO_MANY_TYPES', `stream subscribes to more than ${this.limits.maxTypesPerStream} types`);
    }
    const state = this.newTypeState();
    this.types.set(typeUrl, state);
    return { state, created: true };
  }

  protected recordNack(typeUrl: string, state: State, nonce: string, error: RpcStatus): void {
    const nack = state.recordNack(nonce, error);
    const counters = this.limits.counters;
    counters?.count(counters.nacks, typeUrl);
    this.attachment!.view.report({ kind: 'nack', typeUrl, error });
    this.log.warn({ stream: this.id, node: this.node?.id, type: shortTypeName(typeUrl), nonce, error: nack.message }, 'proxy NACKed config');
  }

  /** istio-agent reports health as requests of type istio.v1.HealthInformation; nobody answers them. */
  private isHealthReport(typeUrl: string, error: RpcStatus | null | undefined): boolean {
    if (typeUrl !== TypeUrl.healthInformation) return false;
    this.health = { healthy: !error?.message, message: error?.message ?? '', at: new Date().toISOString() };
    this.attachment!.view.report({ kind: 'health', error: error ?? undefined });
    return true;
  }

  protected applyInterest(typeUrl: string, change: InterestChange, leaving = false): void {
    if (!isEmptyChange(change)) this.attachment!.view.changeInterest(typeUrl, change, leaving);
  }

  /** The stream's request changed what the type's next push must consider: all of it. */
  protected markDirty(typeUrl: string): void {
    this.types.get(typeUrl)?.noteChanges();
    this.scheduler.markDirty(typeUrl);
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
    state.noteChanges(change.changed, change.removed);
    this.scheduler.markDirty(change.typeUrl);
  }

  /** Pushes one type and counts it; false when the stream is full or was ended. */
  private push(typeUrl: string): boolean {
    const state = this.types.get(typeUrl);
    if (!state) return true;
    const sentBefore = state.lastNonce;
    const started = performance.now();
    const writable = this.pushType(typeUrl, state);
    if (state.lastNonce !== sentBefore) {
      const counters = this.limits.counters;
      if (counters) {
        counters.count(counters.pushes, typeUrl);
        const now = performance.now();
        counters.onPush?.(typeUrl, (now - started) / 1000, state.changedAt === undefined ? undefined : (now - state.changedAt) / 1000);
      }
      state.changedAt = undefined;
    }
    return writable;
  }

  /** Builds (once per view, through the memo), writes and records one type's response. */
  private pushType(typeUrl: string, state: State): boolean {
    if (!this.cache.isInitialized(typeUrl)) return true;
    const plan = this.planResponse(typeUrl, state);
    if (!plan) return true;
    if (!this.roomFor(typeUrl, plan.key, plan.resources)) return false;
    const versionInfo = this.cache.versionInfo(typeUrl);
    const response = this.memo.getOrBuild(typeUrl, plan.key, (nonce) => ({ versionInfo, frame: plan.frame(nonce, versionInfo) }));
    plan.sent(response);
    state.initialResponseDue = false;
    state.lastNonce = response.nonce;
    state.sentAt = Date.now();
    state.versionSent = response.versionInfo;
    return this.call.writeFrame(this.gzip ? gzippedFrame(response) : response.frame);
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
    if (this.gate.closed) return;
    this.gate.enter('closed');
    this.scheduler.stop();
    this.detachCache?.();
    if (this.attachment) {
      for (const [typeUrl, state] of this.types) this.applyInterest(typeUrl, state.subscription.release(), true);
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
