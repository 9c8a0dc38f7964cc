import { hostname } from 'node:os';
import { Registry } from 'prom-client';
import { AdminServer } from './admin/admin-server.js';
import { registerCaService } from './ca/ca-service.js';
import { authenticateCaller } from './ca/authenticator.js';
import { xfccHeader } from './ca/ca-forwarder.js';
import { setUpCa, type CaSubsystem } from './ca/ca-setup.js';
import { CA_AUDIENCE } from './ca/identity.js';
import { loadKubeConfig } from './k8s/kube-client.js';
import { TokenReviewVerifier } from './k8s/token-review.js';
import { KubernetesTopologyWatch } from './k8s/topology-watch.js';
import { setUpAddressKeying, type AddressKeying } from './k8s/address-binding-watch.js';
import { groupTokenIssuer } from './k8s/group-token-issuer.js';
import { WorkloadEntryController } from './k8s/workload-entry-controller.js';
import { WorkloadEntryStore } from './k8s/workload-entry-store.js';
import { WorkloadRegisteringProvider } from './k8s/workload-registration.js';
import { FileServingCertificate, type ServingCertificate } from './ca/serving-certificate.js';
import { upstreamChannelOptions, upstreamCredentials, watchUpstreamCredentials } from './config/upstream-tls.js';
import type { ServeConfig } from './config/schema.js';
import type { Logger } from './log.js';
import { loadMesh } from './sim/mesh-model.js';
import { NetworkTopology } from './mesh/network-topology.js';
import { staticGateways } from './mesh/mesh-networks.js';
import { MeshNetworksFile } from './mesh/mesh-networks-file.js';
import { NetworkView } from './mesh/network-view.js';
import { upstreamRewrites } from './mesh/upstream-rewrites.js';
import { registerRelayRoutes } from './admin/relay-routes.js';
import { registerRelayMetrics } from './admin/relay-metrics.js';
import type { ResourceCache } from './xds/cache/resource-cache.js';
import { CacheSnapshotStore, restoreInto } from './persistence/cache-snapshot.js';
import { SnapshotSchedule } from './persistence/snapshot-schedule.js';
import { Disposer } from './disposer.js';
import { startSimIstiod, type RunningSim } from './sim/sim-server.js';
import { GrpcServer } from './transport/grpc-server.js';
import { BufferBudget } from './transport/buffer-budget.js';
import { defaultBufferBudgetMb } from './limits/memory-limit.js';
import { formatAddress, parseListenAddress, type ListenAddress } from './transport/listen-address.js';
import { AdsService } from './xds/downstream/ads-service.js';
import type { StreamAuthenticator, ViewProvider } from './xds/view.js';
import { defaultBackoff, type BackoffPolicy } from './transport/backoff.js';
import { ConnectionPool } from './xds/upstream/connection-pool.js';
import { GroupRegistry } from './xds/upstream/group-registry.js';
import { AdmissionControl } from './limits/admission-control.js';

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
  serving: ServingCertificate | undefined;
  workloadEntries: WorkloadEntryController | undefined;
  /** How group keys take VM addresses, and the Kubernetes source of address-bound config. */
  addressKeying: AddressKeying;
  metrics: Registry;
  topology: NetworkTopology;
  admission: { streams: AdmissionControl; csrs: AdmissionControl };
  /** Stops everything that was started, in reverse order. */
  disposer: Disposer;
  log: Logger;
}

export interface RelayOptions {
  config: ServeConfig;
  log: Logger;
  /** Tests shorten reconnect delays. */
  backoff?: BackoffPolicy;
}

/**
 * The relay process: downstream ADS listeners, upstream groups over a connection pool, the admin
 * port, and (with `upstream: embedded`) a simulated istiod in the same process, reached over a
 * real loopback gRPC connection exactly like a remote one.
 */
export class Relay {
  private stopping = false;
  private snapshots: CacheSnapshotStore | undefined;
  private snapshotSchedule: SnapshotSchedule | undefined;
  /** How long /readyz reports 503 before connections are closed (endpoint removal takes time). */
  readinessDrainMs = 0;
  private admin: AdminServer | undefined;

  // Assigned from RelayParts in the constructor (declare: no field initialisers to overwrite them).
  declare readonly addresses: RelayAddresses;
  declare readonly ads: AdsService;
  declare readonly groups: GroupRegistry;
  declare readonly embedded: RunningSim | undefined;
  declare readonly ca: CaSubsystem | undefined;
  declare readonly metrics: Registry;
  declare readonly topology: NetworkTopology;
  declare readonly admission: { streams: AdmissionControl; csrs: AdmissionControl };
  declare private readonly pool: ConnectionPool;
  declare private readonly servers: GrpcServer[];
  declare private readonly serving: ServingCertificate | undefined;
  declare readonly workloadEntries: WorkloadEntryController | undefined;
  declare readonly addressKeying: AddressKeying;
  declare private readonly disposer: Disposer;
  declare readonly log: Logger;

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

  private static async assemble({ config, log, backoff = defaultBackoff }: RelayOptions, disposer: Disposer): Promise<Relay> {
    let embedded: RunningSim | undefined;
    let upstreamTarget = config.upstream;
    if (config.upstream === 'embedded') {
      const mesh = loadMesh(config.mesh || undefined);
      if (config.churnRate > 0) mesh.churn.ratePerSecond = config.churnRate;
      embedded = await startSimIstiod(mesh, { host: '127.0.0.1', port: 0 }, log.child({ component: 'sim-istiod' }));
      upstreamTarget = formatAddress(embedded.address);
      disposer.defer(() => embedded?.close());
    }
    const pool = new ConnectionPool({
      target: upstreamTarget,
      size: config.upstreamConnections,
      credentials: upstreamCredentials(config, 'xds'),
      maxReceiveMessageBytes: config.maxUpstreamMessageBytes,
      channelOptions: upstreamChannelOptions(config, 'xds'),
    });
    disposer.defer(() => pool.close());
    const upstreamTlsWatch = watchUpstreamCredentials(config, 'xds', log.child({ component: 'upstream' }), (credentials) => pool.replaceCredentials(credentials));
    disposer.defer(() => upstreamTlsWatch.close());
    const topology = new NetworkTopology();
    disposer.defer(() => topology.close());
    if (config.gateways.length > 0) {
      const { networks, clusters } = staticGateways(config.gateways);
      topology.set({ name: 'flags', networks: { networks }, clusters });
    }
    if (config.meshNetworksFile) {
      const meshNetworksFile = new MeshNetworksFile(config.meshNetworksFile, topology, log.child({ component: 'mesh' }));
      meshNetworksFile.start();
      disposer.defer(() => meshNetworksFile.close());
    }
    if (config.kubernetesTopology) {
      const watch = new KubernetesTopologyWatch(loadKubeConfig(config.kubeconfig), topology, {
        istioNamespace: config.istioNamespace, clusterId: config.clusterId, domain: config.clusterDomain, backoff,
      }, log.child({ component: 'k8s' }));
      disposer.defer(() => watch.close());
      await watch.start();
    }
    const rewrites = upstreamRewrites(config);
    const snapshots = config.cacheSnapshotDir ? new CacheSnapshotStore(config.cacheSnapshotDir, log.child({ component: 'snapshot' }), config.cacheSnapshotMaxMb * 1024 * 1024) : undefined;
    snapshots?.load();
    const addressKeying = await setUpAddressKeying({
      ...config, groupModeUsed: config.mode === 'group' || Object.values(config.modeByNamespace).includes('group'),
    }, log.child({ component: 'address-bindings' }), backoff);
    if (addressKeying.watch) disposer.defer(() => addressKeying.watch?.close());
    const groups = new GroupRegistry({
      pool,
      protocol: config.upstreamProtocol,
      defaultMode: config.mode,
      modeByNamespace: config.modeByNamespace,
      rules: {
        perInstanceMetadata: config.perInstanceMetadata, perInstanceLabels: config.perInstanceLabels,
        ...(addressKeying.addressKey ? { addressKey: addressKeying.addressKey } : {}),
      },
      backoff,
      lingerMs: config.groupLingerSeconds * 1000,
      verifyFraction: config.verifyGroupFraction,
      maxGroups: config.maxGroups,
      responseMemoMb: config.responseMemoMb,
      groupCreation: { ratePerSecond: config.groupCreationRate, burst: config.groupCreationBurst },
      absentNames: { perVm: config.maxAbsentNamesPerVm, perGroup: config.maxAbsentNamesPerGroup, graceMs: config.absentNameGraceSeconds * 1000 },
      ...(config.groupIdentity === 'token-request' ? { groupTokens: groupTokenIssuer(config.kubeconfig) } : {}),
      ...(rewrites ? { transformUpstream: rewrites } : {}),
      ...(snapshots ? {
        prepareCache: (key: string, cache: ResourceCache) => {
          const saved = snapshots.claim(key);
          if (saved) restoreInto(cache, saved);
        },
      } : {}),
      ...(config.sharedUpstreamView ? {
        sharedNetworks: { relayNetwork: config.network, viewFor: (group, network, memo) => new NetworkView(group, network, topology, memo) },
      } : {}),
      log: log.child({ component: 'upstream' }),
    });
    disposer.defer(() => groups.close());
    addressKeying.watch?.onChange(() => groups.rekey());
    const admissionPolicy = {
      ratePerSecond: config.admissionRate, burst: config.admissionBurst, maxQueued: config.admissionQueue, maxWaitMs: config.admissionMaxWaitSeconds * 1000,
    };
    const streamAdmission = new AdmissionControl(admissionPolicy, 'new xDS stream');
    const csrAdmission = new AdmissionControl(admissionPolicy, 'CSR');
    disposer.defer(() => { streamAdmission.close(); csrAdmission.close(); });
    const metrics = new Registry();
    let workloadEntries: WorkloadEntryController | undefined;
    let provider: ViewProvider = groups;
    if (config.autoRegistration) {
      const graceMs = config.workloadEntryGracePeriodSeconds * 1000;
      const controller = new WorkloadEntryController(new WorkloadEntryStore(loadKubeConfig(config.kubeconfig)), {
        instanceId: config.instanceId || process.env.POD_NAME || hostname(),
        gracePeriodMs: graceMs,
        sweepIntervalMs: Math.max(10 * graceMs, 1000),
        maxConnectionAgeMs: config.maxConnectionAgeSeconds * 1000,
        backoff,
      }, metrics, log.child({ component: 'workload-entries' }));
      workloadEntries = controller;
      disposer.defer(() => controller.close(0));
      provider = new WorkloadRegisteringProvider(groups, controller, log.child({ component: 'workload-entries' }));
    }
    const ads = new AdsService(provider, { maxNamesPerRequest: config.maxNamesPerRequest, maxTypesPerStream: 64, admission: streamAdmission }, log.child({ component: 'ads' }));
    const tokenReview = config.tokenReview ? new TokenReviewVerifier(loadKubeConfig(config.kubeconfig), CA_AUDIENCE, config.trustDomain) : undefined;
    const ca = setUpCa(config, metrics, backoff, log.child({ component: 'ca' }), tokenReview);
    if (ca) disposer.defer(() => ca.close());
    // VMs renew and reconnect with workload certificates chained to the mesh root (a VM's token
    // expires; its certificate is what it has left): the local CA's root, or in forward mode the
    // root istiod is verified with, unless a client CA file is given.
    const clientCa = config.tlsClientCaFile || (ca?.summary.rootCertFile ?? '');
    if (config.tlsListen && !clientCa) log.warn('no mesh root for the TLS listener (tlsClientCaFile, or a CA root): VMs cannot authenticate with workload certificates, so a VM whose token has expired cannot renew or reconnect');
    const serving = ca?.serving ?? (config.tlsListen
      ? new FileServingCertificate({ cert: config.tlsCertFile, key: config.tlsKeyFile, clientCa }, log)
      : undefined);
    if (serving) disposer.defer(() => serving.close());
    const servers: GrpcServer[] = [];
    const bufferBudget = new BufferBudget((config.maxBufferedMb ?? defaultBufferBudgetMb()) * 1024 * 1024);
    const addresses: RelayAddresses = { upstream: upstreamTarget };
    // xDS and the CA share each listener, as on istiod's 15012 (and 15010 for local development).
    const newServer = (authenticate?: StreamAuthenticator) => {
      const server = new GrpcServer({
        maxMessageBytes: config.maxMessageBytes,
        bufferBudget, partialMessageTimeoutMs: config.partialMessageTimeoutSeconds * 1000,
        maxStreamsPerConnection: config.maxStreamsPerConnection,
        maxConnectionMemoryMb: config.maxConnectionMemoryMb,
        connections: {
          keepaliveIntervalMs: config.keepaliveIntervalSeconds * 1000,
          keepaliveTimeoutMs: config.keepaliveTimeoutSeconds * 1000,
          idleTimeoutMs: config.idleTimeoutSeconds * 1000,
          maxConnectionAgeMs: config.maxConnectionAgeSeconds * 1000,
          maxConnectionAgeJitter: 0.2,
          maxConnectionAgeGraceMs: config.maxConnectionAgeGraceSeconds * 1000,
        },
        log,
      });
      ads.register(server, authenticate);
      if (ca) registerCaService(server, ca.service, ca.metrics, log.child({ component: 'ca' }), csrAdmission);
      servers.push(server);
      disposer.defer(() => server.close(0));
      return server;
    };
    if (config.xdsListen) addresses.xds = await newServer().listen(parseListenAddress(config.xdsListen));
    if (config.tlsListen && serving) {
      // Like istiod's 15012: every xDS stream proves who it is (workload certificate, or a token),
      // and may only ask for its own namespace and service account.
      const tokens = ca?.tokens ?? tokenReview;
      const authenticate: StreamAuthenticator | undefined = config.xdsIdentityCheck
        ? async (call) => {
          const caller = await authenticateCaller(call, { trustDomain: config.trustDomain, ...(tokens ? { tokens } : {}) });
          return { ...caller.identity, ...(caller.via === 'client-certificate' ? { forwardedClientCert: xfccHeader(caller) } : {}) };
        }
        : undefined;
      const server = newServer(authenticate);
      addresses.tls = await server.listen(parseListenAddress(config.tlsListen), serving.current());
      serving.onChange((tls) => server.updateTls(tls));
    }
    const relay = new Relay({
      addresses, ads, groups, pool, servers, embedded, ca, serving, workloadEntries, addressKeying, metrics, topology, log,
      admission: { streams: streamAdmission, csrs: csrAdmission }, disposer,
    });
    registerRelayMetrics(metrics, { groups, ads, admission: relay.admission, bufferBudget, snapshots, readiness: () => relay.readiness() });
    relay.readinessDrainMs = config.readinessDrainSeconds * 1000;
    if (snapshots) {
      relay.snapshots = snapshots;
      const schedule = relay.snapshotSchedule = new SnapshotSchedule(snapshots, { groups: () => groups.list() }, config.cacheSnapshotIntervalSeconds * 1000, config.groupLingerSeconds * 1000, log.child({ component: 'snapshot' }));
      disposer.defer(() => schedule.close());
    }
    if (config.adminListen) {
      relay.admin = new AdminServer(log);
      disposer.defer(() => relay.admin?.close());
      registerRelayRoutes(relay.admin, relay);
      addresses.admin = await relay.admin.listen(parseListenAddress(config.adminListen));
    }
    log.info({ ...Object.fromEntries(Object.entries(addresses).map(([k, v]) => [k, typeof v === 'string' ? v : formatAddress(v)])), mode: config.mode, upstreamProtocol: config.upstreamProtocol }, 'meshrelay serving');
    return relay;
  }

  /**
   * Ready once the upstream has answered (a connection or any config), or a cache snapshot can be
   * served, and not draining. Serving a snapshot with the upstream unreachable is "degraded".
   */
  readiness(): { ready: boolean; detail: Record<string, unknown> } {
    const upstreamConnected = this.pool.isConnected();
    const configReceived = this.groups.hasReceivedConfig();
    const snapshotFrom = this.snapshots?.loadedFrom;
    const ready = !this.stopping && (upstreamConnected || configReceived || snapshotFrom !== undefined);
    const degraded = !upstreamConnected && snapshotFrom !== undefined;
    return {
      ready,
      detail: {
        stopping: this.stopping, upstream: this.addresses.upstream, upstreamConnected, configReceived, degraded,
        ...(this.snapshots ? { snapshot: { loadedFrom: snapshotFrom ?? null, writes: this.snapshots.writes, lastWriteError: this.snapshots.lastWriteError } } : {}),
      },
    };
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
