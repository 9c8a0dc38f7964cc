import { Registry } from 'prom-client';
import path from 'node:path';
import { AdminServer } from './admin/admin-server.js';
import type { WorkerLink } from './cluster/worker-link.js';
import { otherWorkersSyncz, registerWorkerRoutes } from './cluster/worker-views.js';
import { registerCaMetrics } from './admin/ca-metrics.js';
import { processMetrics } from './admin/process-metrics.js';
import { registerRelayMetrics } from './admin/relay-metrics.js';
import { registerRelayRoutes } from './admin/relay-routes.js';
import { registerWorkloadEntryMetrics } from './admin/workload-entry-metrics.js';
import { setUpCa, type CaSubsystem } from './ca/ca-setup.js';
import { CA_AUDIENCE } from './ca/identity.js';
import { instanceName, type ServeConfig } from './config/schema.js';
import { RELAY_VERSION } from './version.js';
import { Disposer } from './disposer.js';
import type { AddressKeying } from './k8s/address-binding-watch.js';
import { loadKubeConfig } from './k8s/kube-client.js';
import { TokenReviewVerifier } from './k8s/token-review.js';
import type { WorkloadEntryController } from './k8s/workload-entry-controller.js';
import { AdmissionControl } from './limits/admission-control.js';
import { planConnectionCapacity, type ConnectionCapacity } from './limits/connection-capacity.js';
import { openFileLimit } from './limits/open-files.js';
import { ConnectionGate } from './transport/connection-gate.js';
import type { Logger } from './log.js';
import type { NetworkTopology } from './mesh/network-topology.js';
import type { CacheSnapshotStore } from './persistence/cache-snapshot.js';
import type { SnapshotSchedule } from './persistence/snapshot-schedule.js';
import { setUpGroups } from './setup/groups-setup.js';
import { setUpListeners } from './setup/listeners-setup.js';
import { setUpAutoRegistration } from './setup/registration-setup.js';
import { setUpTopology } from './setup/topology-setup.js';
import { setUpUpstream } from './setup/upstream-setup.js';
import type { RunningSim } from './sim/sim-server.js';
import { defaultBackoff, type BackoffPolicy } from './transport/backoff.js';
import type { GrpcServer } from './transport/grpc-server.js';
import { formatAddress, parseListenAddress, type ListenAddress } from './transport/listen-address.js';
import { AdsService } from './xds/downstream/ads-service.js';
import type { SessionLimits } from './xds/downstream/ads-session.js';
import { protoRoot } from './xds/protocol/protos.js';
import type { ConnectionPool } from './xds/upstream/connection-pool.js';
import type { GroupRegistry } from './xds/upstream/group-registry.js';

/** A stream waits at least this long for admission before it is refused (istio-agent then retries). */
const MIN_ADMISSION_WAIT_SECONDS = 30;

export interface RelayAddresses {
  xds?: ListenAddress;
  tls?: ListenAddress;
  admin?: ListenAddress;
  upstream: string;
}

interface RelayParts {
  addresses: RelayAddresses;
  ads: AdsService;
  groups: GroupRegistry;
  pool: ConnectionPool;
  servers: GrpcServer[];
  embedded: RunningSim | undefined;
  ca: CaSubsystem | undefined;
  workloadEntries: WorkloadEntryController | undefined;
  addressKeying: AddressKeying;
  metrics: Registry;
  topology: NetworkTopology;
  admission: { streams: AdmissionControl; csrs: AdmissionControl };
  connections: ConnectionGate;
  capacity: ConnectionCapacity;
  snapshots: CacheSnapshotStore | undefined;
  snapshotSchedule: SnapshotSchedule | undefined;
  /** Stops everything that was started, in reverse order. */
  disposer: Disposer;
  readinessDrainMs: number;
  log: Logger;
}

export interface RelayOptions {
  config: ServeConfig;
  log: Logger;
  /** Set in a worker process: the coordinator hands it connections (docs/ARCHITECTURE.md "Workers"). */
  worker?: WorkerLink;
  /** Tests shorten reconnect delays. */
  backoff?: BackoffPolicy;
  /** How many VM connections this process takes (a worker's share of the pod's); planned for one process if absent. */
  capacity?: ConnectionCapacity;
}

/** How istioctl names this relay in proxy-status (istiod's IstioControlPlaneInstance: Component, ID, Info). */
function controlPlaneIdentifier(config: ServeConfig): string {
  return JSON.stringify({ Component: 'meshrelay', ID: instanceName(config), Info: { version: RELAY_VERSION } });
}

/** The admission queue holds what this process may hold; a full queue is admitted within the wait (docs/CAPACITY.md). */
function admissionPolicyFor(config: ServeConfig, capacity: ConnectionCapacity) {
  const maxQueued = config.admissionQueue ?? capacity.perProcess;
  const drainSeconds = config.admissionRate > 0 ? maxQueued / config.admissionRate : 0;
  return {
    ratePerSecond: config.admissionRate, burst: config.admissionBurst, maxQueued,
    maxWaitMs: (config.admissionMaxWaitSeconds ?? Math.max(MIN_ADMISSION_WAIT_SECONDS, Math.ceil(drainSeconds))) * 1000,
  };
}

/** Which callers' responses are gzip-compressed (when they accept it). */
function compressionPolicy(config: ServeConfig): SessionLimits['compressFor'] {
  if (config.compressResponses === 'all') return () => true;
  if (config.compressResponses === 'relays') return (caller) => caller?.relayedBy !== undefined;
  return undefined;
}

/**
 * The relay process: downstream ADS listeners, upstream groups over a connection pool, the admin
 * port, and (with `upstream: embedded`) a simulated istiod in the same process, reached over a
 * real loopback gRPC connection exactly like a remote one.
 */
export class Relay {
  private stopping = false;

  // Assigned from RelayParts in the constructor (declare: no field initialisers to overwrite them).
  declare readonly addresses: RelayAddresses;
  declare readonly ads: AdsService;
  declare readonly groups: GroupRegistry;
  declare readonly embedded: RunningSim | undefined;
  declare readonly ca: CaSubsystem | undefined;
  declare readonly metrics: Registry;
  declare readonly topology: NetworkTopology;
  declare readonly admission: { streams: AdmissionControl; csrs: AdmissionControl };
  /** The VM connections this process holds, against its limit. */
  declare readonly connections: ConnectionGate;
  declare readonly capacity: ConnectionCapacity;
  declare readonly workloadEntries: WorkloadEntryController | undefined;
  declare readonly addressKeying: AddressKeying;
  declare readonly log: Logger;
  /** How long /readyz reports 503 before connections are closed (endpoint removal takes time). */
  declare readonly readinessDrainMs: number;
  declare private readonly pool: ConnectionPool;
  declare private readonly servers: GrpcServer[];
  declare private readonly snapshots: CacheSnapshotStore | undefined;
  declare private readonly snapshotSchedule: SnapshotSchedule | undefined;
  declare private readonly disposer: Disposer;

  private constructor(parts: RelayParts) {
    Object.assign(this, parts);
  }

  /** Starts everything; if any part fails, what was already started is stopped again. */
  static async start(options: RelayOptions): Promise<Relay> {
    const disposer = new Disposer();
    try {
      return await Relay.assemble(options, disposer);
    } catch (error) {
      await disposer.dispose();
      throw error;
    }
  }

  private static async assemble({
    config, log, worker, backoff = { ...defaultBackoff, maxMs: config.reconnectBackoffMaxSeconds * 1000 },
    capacity = planConnectionCapacity({ cores: 1, openFileLimit: openFileLimit(), workers: 1, maxConnections: config.maxConnections }),
  }: RelayOptions, disposer: Disposer): Promise<Relay> {
    const upstream = await setUpUpstream(config, log, disposer, worker?.spec.embeddedUpstream);
    const topology = await setUpTopology(config, backoff, log, disposer);
    const snapshotRoot = worker && config.cacheSnapshotDir ? { snapshotRoot: path.dirname(config.cacheSnapshotDir) } : {};
    const { groups, addressKeying, snapshots, snapshotSchedule } = await setUpGroups(config, { pool: upstream.pool, topology, ...snapshotRoot }, backoff, log, disposer);
    const admissionPolicy = admissionPolicyFor(config, capacity);
    const admission = { streams: new AdmissionControl(admissionPolicy, 'new xDS stream'), csrs: new AdmissionControl(admissionPolicy, 'CSR') };
    disposer.defer(() => { admission.streams.close(); admission.csrs.close(); });
    const { provider, workloadEntries } = setUpAutoRegistration(config, groups, backoff, log, disposer);
    const ads = new AdsService(provider, {
      maxNamesPerRequest: config.maxNamesPerRequest, maxTypesPerStream: 64, admission: admission.streams, compressFor: compressionPolicy(config),
    }, log.child({ component: 'ads' }), {
      systemNamespace: config.istioNamespace, controlPlane: controlPlaneIdentifier(config),
      ...(worker ? { otherWorkers: (namespace: string | undefined) => otherWorkersSyncz(worker, namespace) } : {}),
    });
    const tokenReview = config.tokenReview ? new TokenReviewVerifier(loadKubeConfig(config.kubeconfig), CA_AUDIENCE, config.trustDomain) : undefined;
    const ca = setUpCa(config, backoff, log.child({ component: 'ca' }), tokenReview);
    if (ca) disposer.defer(() => ca.close());
    // Parsed before the listeners open (~0.3 s of work): else the first VM's request waits for it.
    protoRoot();
    const connections = new ConnectionGate(capacity.perProcess, log.child({ component: 'listener' }));
    const listeners = await setUpListeners(config, { ads, ca, tokenReview, csrAdmission: admission.csrs, worker, gate: connections }, log, disposer);
    const addresses: RelayAddresses = {
      upstream: upstream.target, ...(listeners.xds ? { xds: listeners.xds } : {}), ...(listeners.tls ? { tls: listeners.tls } : {}),
    };
    const metrics = Registry.merge([processMetrics()]);
    const relay = new Relay({
      addresses, ads, groups, pool: upstream.pool, servers: listeners.servers, embedded: upstream.embedded, ca, workloadEntries, addressKeying,
      metrics, topology, admission, connections, capacity, snapshots, snapshotSchedule, disposer, log, readinessDrainMs: config.readinessDrainSeconds * 1000,
    });
    registerRelayMetrics(metrics, { groups, ads, admission, connections, servers: listeners.servers, bufferBudget: listeners.bufferBudget, reclaimer: listeners.reclaimer, snapshots, readiness: () => relay.readiness() });
    if (ca) registerCaMetrics(metrics, ca);
    if (workloadEntries) registerWorkloadEntryMetrics(metrics, workloadEntries);
    if (config.adminListen) {
      const admin = new AdminServer(log);
      disposer.defer(() => admin.close());
      registerRelayRoutes(admin, relay);
      if (worker) registerWorkerRoutes(admin, relay);
      addresses.admin = await admin.listen(parseListenAddress(config.adminListen));
      worker?.ready(`http://${formatAddress(addresses.admin)}`, ca?.summary, { ...(listeners.xds ? { xds: listeners.xds } : {}), ...(listeners.tls ? { tls: listeners.tls } : {}) });
    }
    log.info({ ...Object.fromEntries(Object.entries(addresses).map(([k, v]) => [k, typeof v === 'string' ? v : formatAddress(v)])), mode: config.mode, upstreamProtocol: config.upstreamProtocol }, 'meshrelay serving');
    return relay;
  }

  /**
   * Ready once the upstream has answered (a connection or any config), or a cache snapshot can be
   * served, and not draining, and not holding all the connections it can (a full replica is taken
   * out of its Service's endpoints so new VMs go to another; its own VMs keep their streams).
   * Serving a snapshot with the upstream unreachable is "degraded".
   */
  readiness(): { ready: boolean; detail: Record<string, unknown> } {
    const upstreamConnected = this.pool.isConnected();
    const configReceived = this.groups.hasReceivedConfig();
    const snapshotFrom = this.snapshots?.loadedFrom;
    const full = this.connections.full;
    const ready = !this.stopping && !full && (upstreamConnected || configReceived || snapshotFrom !== undefined);
    const degraded = !upstreamConnected && snapshotFrom !== undefined;
    return {
      ready,
      detail: {
        stopping: this.stopping, upstream: this.addresses.upstream, upstreamConnected, configReceived, degraded,
        connections: { open: this.connections.open, limit: this.connections.limit, refused: this.connections.refused, full, capacity: this.capacity.reason, acceptQueue: this.capacity.acceptQueue.note },
        ...(this.snapshots ? { snapshot: { loadedFrom: snapshotFrom ?? null, writes: this.snapshots.writes, lastWriteError: this.snapshots.lastWriteError } } : {}),
      },
    };
  }

  /**
   * A worker with kernel balance: stop or start accepting on the listening sockets it shares with
   * the other workers, as the coordinator says (cluster/accept-governor.ts); open connections stay.
   */
  async setAccepting(accepting: boolean): Promise<void> {
    if (this.stopping) return;
    if (!accepting) for (const server of this.servers) server.stopAccepting();
    else await Promise.all(this.servers.map((server) => server.resumeAccepting()));
  }

  /**
   * SIGTERM: not ready first (so load balancers stop sending new VMs), then GOAWAY, ADS streams
   * ended with UNAVAILABLE (VMs reconnect to another replica), in-flight CSRs finished — all
   * within the grace period.
   */
  async stop(graceMs = 0): Promise<void> {
    this.stopping = true;
    // Before VMs leave: named resources they alone held are dropped from the caches once they go.
    this.snapshotSchedule?.close();
    const readinessWindow = Math.min(this.readinessDrainMs, graceMs / 2);
    if (readinessWindow > 0) await new Promise((resolve) => setTimeout(resolve, readinessWindow));
    await Promise.all(this.servers.map((server) => server.close(graceMs - readinessWindow)));
    // The VMs' disconnects are recorded on their WorkloadEntries before the process goes.
    await this.workloadEntries?.close(Math.max(1000, graceMs - readinessWindow));
    // The rest, the last started first: the final snapshot while the groups still hold their caches.
    await this.disposer.dispose();
    this.log.info('meshrelay stopped');
  }
}
