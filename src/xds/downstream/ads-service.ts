import type { Logger } from '../../log.js';
import type { GrpcServer } from '../../transport/grpc-server.js';
import { AdsMethod } from '../protocol/envelopes.js';
import { DebugTypeUrl, shortTypeName } from '../protocol/type-urls.js';
import type { AdsSession, DebugAnswer, SessionLimits } from './ads-session.js';
import { debugSyncz, syncState, visibleNamespace, type SyncState } from './debug-status.js';
import { DeltaSession } from './delta-session.js';
import { PushCounters } from './push-counters.js';
import { SotwSession } from './sotw-session.js';
import type { CallerIdentity, StreamAuthenticator, ViewProvider } from '../view.js';
import { spiffeId } from '../../identity.js';

export interface SyncStatus {
  stream: string;
  proxy: string;
  protocol: string;
  key: string;
  mode: string;
  connectedAt: string;
  /** Waiting for authentication, admission or its view, serving, … (SessionPhase). */
  phase: string;
  /** Who the stream proved to be (TLS listener), and the relay that carried its credential. */
  caller?: { identity: string; relayedBy?: string };
  health?: { healthy: boolean; message: string; at: string };
  types: Record<string, {
    typeUrl: string;
    wildcard: boolean;
    names: number;
    /** As istioctl proxy-status shows it: SYNCED, STALE, NOT SENT or ERROR. */
    status: SyncState;
    versionSent: string;
    versionAcked: string;
    nonceSent: string;
    acks: number;
    nacks: number;
    lastNack?: { nonce: string; message: string; code: number; at: string };
  }>;
}

/** Who answers istioctl's debug requests: the namespace whose callers see every VM, and the control plane's identifier. */
export interface DebugIdentity {
  systemNamespace: string;
  /** DiscoveryResponse.control_plane.identifier: istiod's IstioControlPlaneInstance JSON (pilot/pkg/xds/xdsgen.go). */
  controlPlane: string;
  /** With workers: the other workers' syncz entries for the same namespace (cluster/worker-views.ts). */
  otherWorkers?: (namespace: string | undefined) => Promise<DebugAnswer['resources']>;
}

/** Serves both ADS methods from one ViewProvider and keeps the live sessions for the admin views. */
export class AdsService {
  private readonly sessions = new Set<AdsSession>();
  readonly counters = new PushCounters();

  constructor(
    private readonly provider: ViewProvider,
    private readonly limits: SessionLimits,
    private readonly log: Logger,
    private readonly debugIdentity: DebugIdentity = { systemNamespace: 'istio-system', controlPlane: '' },
  ) {}

  /** istiod's debug types, for this service's VMs (istioctl proxy-status --xds-address). */
  private async answerDebug(typeUrl: string, caller: CallerIdentity): Promise<DebugAnswer> {
    const { systemNamespace, controlPlane, otherWorkers } = this.debugIdentity;
    if (typeUrl !== DebugTypeUrl.syncz) return { resources: [], controlPlane };
    const namespace = visibleNamespace(caller, systemNamespace);
    const others = otherWorkers ? await otherWorkers(namespace) : [];
    return { resources: [...this.syncz(namespace), ...others], controlPlane };
  }

  /** This process's VMs as istiod's syncz entries, those of `namespace` only when it is set. */
  syncz(namespace: string | undefined): DebugAnswer['resources'] {
    return debugSyncz(this.sessions, namespace);
  }

  /** Serves ADS on a server; with `authenticate`, every stream proves who it is first. */
  register(server: GrpcServer, authenticate?: StreamAuthenticator): void {
    const ended = (session: AdsSession) => this.sessions.delete(session);
    const limits: SessionLimits = { ...this.limits, counters: this.counters, debug: (typeUrl, caller) => this.answerDebug(typeUrl, caller) };
    server.register(AdsMethod.sotw, (call) => this.track(new SotwSession(call, this.provider, limits, this.log, ended, authenticate)), { longLived: true });
    server.register(AdsMethod.delta, (call) => this.track(new DeltaSession(call, this.provider, limits, this.log, ended, authenticate)), { longLived: true });
  }

  get connectedProxies(): number {
    return this.sessions.size;
  }

  syncStatus(): SyncStatus[] {
    return [...this.sessions].filter((session) => session.node).map((session) => ({
      stream: session.id,
      proxy: session.node!.id,
      protocol: session.protocol,
      key: session.attachment?.key ?? '',
      mode: session.attachment?.mode ?? '',
      connectedAt: session.connectedAt,
      phase: session.phase,
      ...(session.caller ? { caller: describeCaller(session.caller) } : {}),
      ...(session.health ? { health: session.health } : {}),
      types: Object.fromEntries([...session.types].map(([typeUrl, state]) => [shortTypeName(typeUrl), {
        typeUrl,
        wildcard: state.subscription.wildcard,
        names: state.subscription.names.size,
        status: syncState(state),
        versionSent: state.versionSent,
        versionAcked: state.versionAcked,
        nonceSent: state.lastNonce,
        acks: state.acks,
        nacks: state.nacks,
        ...(state.lastNack ? { lastNack: state.lastNack } : {}),
      }])),
    }));
  }

  /**
   * What one proxy was sent, per type: versions and the resources it holds as far as the relay
   * knows (decoded where the type is known), like istiod's /debug/config_dump?proxyID=.
   */
  configDump(proxy: string, decode: (typeUrl: string, body: Buffer) => unknown): unknown[] {
    return [...this.sessions].filter((session) => session.node?.id === proxy).map((session) => ({
      stream: session.id,
      protocol: session.protocol,
      key: session.attachment?.key ?? '',
      types: Object.fromEntries([...session.types].map(([typeUrl, state]) => [shortTypeName(typeUrl), {
        typeUrl,
        versionSent: state.versionSent,
        versionAcked: state.versionAcked,
        ...(state.lastNack ? { lastNack: state.lastNack } : {}),
        resources: [...state.sent].map(([name, version]) => {
          const cached = session.attachment?.view.cache.get(typeUrl, name);
          return { name, version, ...(cached && cached.version === version ? { resource: decode(cached.typeUrl, cached.body) } : {}) };
        }),
      }])),
    }));
  }

  private track(session: AdsSession): void {
    this.sessions.add(session);
  }
}

function describeCaller(caller: CallerIdentity): NonNullable<SyncStatus['caller']> {
  return {
    identity: spiffeId(caller),
    ...(caller.relayedBy ? { relayedBy: caller.relayedBy } : {}),
  };
}
