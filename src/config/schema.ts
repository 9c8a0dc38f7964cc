import { hostname } from 'node:os';
import { z } from 'zod';

const address = z.string().regex(/^(\[[^\]]+\]|[^:]*):\d{1,5}$/, 'want host:port, [ipv6]:port or :port');
const optionalAddress = z.union([z.literal(''), address]);
const mode = z.enum(['group', 'stream']);

/** Everything `meshrelay serve` can be told, with defaults. Keys are the config file's keys. */
export const serveSchema = z.object({
  upstream: z.union([z.literal('embedded'), address]).default('embedded'),
  upstreamProtocol: z.enum(['delta', 'sotw']).default('delta'),
  upstreamConnections: z.number().int().min(1).max(64).default(2),
  // The longest wait between reconnects to the upstream, istiod's CA and the Kubernetes API
  // (exponential from 0.5 s, with jitter); an edge site wants a short one so a healed link is used soon.
  reconnectBackoffMaxSeconds: z.number().min(0.5).default(30),
  // HTTP/2 PINGs on the upstream connections: a link that stops carrying data (an edge link cut with
  // sockets left open) is found dead after interval + timeout. istiod's gRPC server refuses pings
  // more often than every 15 s (grpc-go keepalive EnforcementPolicy MinTime), so keep ≥ 15 toward it.
  upstreamKeepaliveSeconds: z.number().min(1).default(30),
  upstreamKeepaliveTimeoutSeconds: z.number().min(0.1).default(10),
  // A VM whose group has nothing cached and whose upstream has not answered within this long is
  // ended UNAVAILABLE (Envoy backs off and retries), instead of waiting on an empty stream.
  upstreamFirstResponseTimeoutSeconds: z.number().min(0.1).default(15),
  upstreamCaFile: z.string().default(''),
  upstreamCertFile: z.string().default(''),
  upstreamKeyFile: z.string().default(''),
  // The TLS name to send and verify when istiod is reached by an address its certificate does not
  // name (an IP, a load balancer); istio-agent's ISTIOD_SAN does the same for VMs.
  upstreamServerName: z.string().default(''),
  xdsListen: optionalAddress.default('127.0.0.1:15010'),
  tlsListen: optionalAddress.default(''),
  tlsCertFile: z.string().default(''),
  tlsKeyFile: z.string().default(''),
  tlsClientCaFile: z.string().default(''),
  adminListen: optionalAddress.default('127.0.0.1:15014'),
  mode: mode.default('group'),
  modeByNamespace: z.record(z.string(), mode).default({}),
  // Node metadata that differs per VM without changing what istiod computes (docs/ISTIO-FACTS.md).
  perInstanceMetadata: z.array(z.string()).default(['INSTANCE_IPS', 'NAME', 'WORKLOAD_NAME', 'WORKLOAD_ENTRY', 'POD_NAME', 'HOSTNAME']),
  perInstanceLabels: z.array(z.string()).default([]),
  // Group mode: where the relay learns what istiod binds to VM addresses (docs/ADDRESS-BINDING.md).
  addressConfigSource: z.enum(['none', 'kubernetes']).default('none'),
  // The operator's word that no config is bound to VM addresses (no address-only ServiceEntry
  // endpoints, WorkloadEntries or selector-less Services naming VMs): VMs then share groups
  // regardless of address. Without it and without a source, each address is its own group.
  addressIndependentConfig: z.boolean().default(false),
  // How long after address-bound config changes VMs are moved: istiod must have taken the change in first.
  addressRekeyDelaySeconds: z.number().min(0).default(2),
  // The share of VMs joining a group whose own config istiod is asked for and compared with the
  // group's; one that differs gets a group of its own (docs/ADDRESS-BINDING.md).
  verifyGroupFraction: z.number().min(0).max(1).default(0),
  // members: a group's stream carries a member's credential; token-request: the relay may also ask
  // the API server for a token of the group's service account (docs/SECURITY.md).
  groupIdentity: z.enum(['members', 'token-request']).default('members'),
  groupLingerSeconds: z.number().min(0).default(60),
  // Stream mode: how long a VM's upstream stream outlives its downstream one, still subscribed, for
  // the VM to come back to (keyed by its node and identity); istiod keeps computing for it meanwhile.
  streamLingerSeconds: z.number().min(0).default(30),
  // Group-mode groups (upstream streams to istiod) at most; a VM that would need one more is RESOURCE_EXHAUSTED.
  maxGroups: z.number().int().min(1).default(10_000),
  // New groups per second and burst: beyond it a VM needing a new group is UNAVAILABLE (it backs off).
  groupCreationRate: z.number().min(0).default(100),
  groupCreationBurst: z.number().int().min(1).default(500),
  // Subscribed names the upstream does not have (asked for, upstream answering, still missing after
  // the grace): a VM over its limit, or holding the most while its group is over the group's, is ended.
  maxAbsentNamesPerVm: z.number().int().min(0).default(1000),
  maxAbsentNamesPerGroup: z.number().int().min(0).default(10_000),
  absentNameGraceSeconds: z.number().min(0.01).default(10),
  maxMessageBytes: z.number().int().min(1024).default(4 * 1024 * 1024),
  // Bytes held for streams across the process (partly received messages, responses queued to streams
  // that do not read); past it the stream holding the most is ended. Default: a quarter of the
  // container's memory limit. And how long a message may stay unfinished.
  maxBufferedMb: z.number().min(1).optional(),
  // Serialized responses kept for reuse by other streams, across all groups (least recently used go first).
  responseMemoMb: z.number().min(1).default(128),
  partialMessageTimeoutSeconds: z.number().min(0.1).default(30),
  maxUpstreamMessageBytes: z.number().int().min(1024).default(128 * 1024 * 1024),
  maxNamesPerRequest: z.number().int().min(1).default(5000),
  maxStreamsPerConnection: z.number().int().min(1).default(100_000),
  maxConnectionMemoryMb: z.number().int().min(1).default(512),
  keepaliveIntervalSeconds: z.number().min(0).default(30),
  keepaliveTimeoutSeconds: z.number().min(0.1).default(10),
  idleTimeoutSeconds: z.number().min(0).default(0),
  maxConnectionAgeSeconds: z.number().min(0).default(0),
  maxConnectionAgeGraceSeconds: z.number().min(0).default(10),
  network: z.string().default(''),
  gateways: z.array(z.string()).default([]),
  meshNetworksFile: z.string().default(''),
  sharedUpstreamView: z.boolean().default(false),
  repairSni: z.boolean().default(false),
  legacyGlobalNames: z.boolean().default(false),
  mesh: z.string().default(''),
  churnRate: z.number().min(0).default(0),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  shutdownGraceSeconds: z.number().min(0).default(10),
  readinessDrainSeconds: z.number().min(0).default(3),
  // Relay processes serving VMs, one per core the pod may use (cgroup CPU quota and CPU set) by
  // default, and more where one process's open-file limit cannot hold maxConnections; above 1, a
  // coordinator starts them and serves the admin port over all (docs/ARCHITECTURE.md "Workers").
  workers: z.number().int().min(1).max(256).optional(),
  // VM connections this pod holds before it refuses new ones (0: as many as its workers' open-file
  // limits allow, less what each keeps for admin and upstream; docs/CAPACITY.md).
  maxConnections: z.number().int().min(0).default(0),
  // Which worker takes a connection: the one its source address hashes to unless that one holds
  // 1.1× the mean (reconnects land where the VM's stream lingered), the least loaded, or (kernel)
  // whichever accepts first on one shared socket, with no hand-off per connection. Default:
  // source-address where stream mode is used (its lingering streams are per worker), else kernel.
  workerBalance: z.enum(['source-address', 'least-connections', 'kernel']).optional(),
  admissionRate: z.number().min(0).default(1000),
  admissionBurst: z.number().int().min(1).default(2000),
  // New streams waiting for admission: by default as many as the pod holds connections (a whole
  // fleet reconnecting at once waits its turn instead of being refused and retrying), for up to
  // the time the rate takes to admit them all, at least 30 s.
  admissionQueue: z.number().int().min(0).optional(),
  admissionMaxWaitSeconds: z.number().min(0.01).optional(),
  cacheSnapshotDir: z.string().default(''),
  cacheSnapshotIntervalSeconds: z.number().min(0.05).default(10),
  // Larger snapshots are neither written nor loaded (parsing a giant one would exhaust memory).
  cacheSnapshotMaxMb: z.number().min(1).default(256),
  caMode: z.enum(['auto', 'local', 'forward', 'off']).default('auto'),
  caDir: z.string().default(''),
  caUpstream: z.union([z.literal(''), address]).default(''),
  // The CA forwarder's TLS toward istiod's CA (15012, TLS only): its root and server name default to
  // the xDS upstream's, so they need setting only where the two are reached differently.
  caUpstreamCaFile: z.string().default(''),
  caUpstreamServerName: z.string().default(''),
  // For a CA upstream that speaks plaintext (a local test double); never istiod itself.
  caUpstreamPlaintext: z.boolean().default(false),
  stateDir: z.string().default('.meshrelay'),
  trustDomain: z.string().min(1).default('cluster.local'),
  jwksFile: z.string().default(''),
  jwtIssuers: z.array(z.string()).default([]),
  tokenReview: z.boolean().default(false),
  xdsIdentityCheck: z.boolean().default(true),
  // SPIFFE IDs of edge relays whose client certificate may carry the credentials of the VMs they
  // speak for (a bearer token or x-forwarded-client-cert) on the TLS listener (docs/EDGE.md).
  // gzip responses to callers that accept it: the trusted relays' streams (an edge link), every
  // caller, or none. istiod never compresses and refuses compressed messages (its build has no gzip
  // codec), so the relay sends nothing compressed upstream (docs/EDGE.md).
  compressResponses: z.enum(['off', 'relays', 'all']).default('relays'),
  trustedRelays: z.array(z.string().regex(/^spiffe:\/\/[^/]+\/ns\/[^/]+\/sa\/[^/]+$/, 'want spiffe://<trust domain>/ns/<namespace>/sa/<service account>')).default([]),
  plaintextRemote: z.boolean().default(false),
  kubeconfig: z.string().default(''),
  kubernetesTopology: z.boolean().default(false),
  istioNamespace: z.string().min(1).default('istio-system'),
  clusterId: z.string().min(1).default('Kubernetes'),
  clusterDomain: z.string().min(1).default('cluster.local'),
  autoRegistration: z.boolean().default(false),
  workloadEntryGracePeriodSeconds: z.number().min(0).default(10),
  // Each replica's Lease (coordination.k8s.io) in its namespace: a replica whose lease expired
  // left its VMs' entries to the others, which clean them up after the grace period.
  replicaLeaseSeconds: z.number().min(1).default(15),
  instanceId: z.string().default(''),
  workloadCertTtlSeconds: z.number().int().min(60).default(24 * 3600),
  maxWorkloadCertTtlSeconds: z.number().int().min(60).default(90 * 24 * 3600),
  servingDnsNames: z.array(z.string().min(1)).default(['istiod.istio-system.svc']),
  caMaxConcurrent: z.number().int().min(1).default(64),
  // Local CA: threads that verify and sign CSRs off the event loop; default one per core but one (1–4).
  caSigningThreads: z.number().int().min(1).max(64).optional(),
  caMaxQueued: z.number().int().min(0).default(10_000),
  caRequestTimeoutSeconds: z.number().min(0.1).default(10),
}).strict().superRefine((config, context) => {
  if (config.tlsListen && (!config.tlsCertFile || !config.tlsKeyFile) && resolveCaMode(config) !== 'local') {
    context.addIssue({ code: 'custom', path: ['tlsListen'], message: 'needs tlsCertFile and tlsKeyFile (only local CA mode issues its own serving certificate)' });
  }
  if (config.xdsListen && !config.plaintextRemote && !isLoopbackListen(config.xdsListen)) {
    context.addIssue({ code: 'custom', path: ['xdsListen'], message: 'the plaintext listener serves unauthenticated xDS and certificates: keep it on loopback, or set plaintextRemote' });
  }
  if (config.sharedUpstreamView && !config.network) {
    context.addIssue({ code: 'custom', path: ['sharedUpstreamView'], message: 'needs network: the relay\'s own network, which its upstream node declares' });
  }
  if (config.workloadCertTtlSeconds > config.maxWorkloadCertTtlSeconds) {
    context.addIssue({ code: 'custom', path: ['workloadCertTtlSeconds'], message: 'is above maxWorkloadCertTtlSeconds' });
  }
  if (resolveCaMode(config) === 'forward' && config.upstream === 'embedded' && !config.caUpstream) {
    context.addIssue({ code: 'custom', path: ['caMode'], message: 'forward needs an istiod: set upstream or caUpstream (the embedded simulator has no CA)' });
  }
  if (config.caMode === 'forward' && !caUpstreamRoot(config) && !config.caUpstreamPlaintext) {
    context.addIssue({
      code: 'custom', path: ['caUpstreamCaFile'],
      message: 'forward sends VMs\' tokens to istiod\'s CA, which serves TLS only (15012): set caUpstreamCaFile (or upstreamCaFile) to the mesh root; caUpstreamPlaintext only for a plaintext CA that is not istiod',
    });
  }
  if (!config.xdsListen && !config.tlsListen) {
    context.addIssue({ code: 'custom', path: ['xdsListen'], message: 'at least one of xdsListen and tlsListen must be set' });
  }
  if (config.upstream !== 'embedded' && (config.mesh || config.churnRate > 0)) {
    context.addIssue({ code: 'custom', path: ['mesh'], message: 'mesh and churnRate apply only to the embedded simulated istiod (upstream: embedded)' });
  }
});

export type ServeConfig = z.infer<typeof serveSchema>;

function isLoopbackListen(address: string): boolean {
  const host = address.slice(0, address.lastIndexOf(':')).replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/** The root the CA forwarder verifies istiod with: its own, else the xDS upstream's. */
export function caUpstreamRoot(config: { caUpstreamCaFile: string; upstreamCaFile: string }): string {
  return config.caUpstreamCaFile || config.upstreamCaFile;
}

/**
 * `auto`: sign locally in front of the embedded simulator; forward to a real istiod when its CA can
 * be reached over TLS (a root is configured), else no CA (istiod's CA is never plaintext).
 */
export function resolveCaMode(config: { caMode: string; upstream: string; caUpstreamCaFile: string; upstreamCaFile: string; caUpstreamPlaintext: boolean }): 'local' | 'forward' | 'off' {
  if (config.caMode !== 'auto') return config.caMode as 'local' | 'forward' | 'off';
  if (config.upstream === 'embedded') return 'local';
  return caUpstreamRoot(config) || config.caUpstreamPlaintext ? 'forward' : 'off';
}

/** `meshrelay token`: a development service-account token the relay's dev issuer signs. */
export const tokenSchema = z.object({
  namespace: z.string().min(1),
  serviceAccount: z.string().min(1),
  stateDir: z.string().default('.meshrelay'),
  ttlSeconds: z.number().int().min(1).default(3600),
}).strict();

/** `meshrelay sim-istiod`: the simulated istiod on its own. */
export const simSchema = z.object({
  listen: address.default('127.0.0.1:15010'),
  mesh: z.string().default(''),
  churnRate: z.number().min(0).default(0),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
}).strict();

/** `meshrelay bench csr`: CSR throughput and latency of local signing. */
export const benchCsrSchema = z.object({
  concurrency: z.number().int().min(1).default(500),
  seconds: z.number().min(1).default(10),
  caKeys: z.array(z.enum(['rsa-2048', 'rsa-4096', 'ec-p256'])).default(['rsa-2048', 'ec-p256']),
  csrKey: z.enum(['rsa-2048', 'ec-p256']).default('rsa-2048'),
  relayWorkers: z.number().int().min(1).max(64).default(1),
  relayCpus: z.string().regex(/^[0-9,-]*$/).default(''),
  clientCpus: z.string().regex(/^[0-9,-]*$/).default(''),
  json: z.string().default(''),
  relayCpuProf: z.string().default(''),
}).strict();

/** `meshrelay bench compression`: what gzip saves and costs per response on a relay↔relay link (docs/EDGE.md). */
export const benchCompressionSchema = z.object({
  profiles: z.array(z.enum(['S', 'M', 'L'])).default(['S', 'M']),
  rounds: z.number().int().min(1).default(20),
  json: z.string().default(''),
}).strict();

/** How a relay with workers gives them connections (docs/ARCHITECTURE.md "Workers"). */
export function workerBalance(config: ServeConfig): 'source-address' | 'least-connections' | 'kernel' {
  if (config.workerBalance) return config.workerBalance;
  const streamModeUsed = config.mode === 'stream' || Object.values(config.modeByNamespace).includes('stream');
  return streamModeUsed ? 'source-address' : 'kernel';
}

/** The namespace this replica runs in (its Lease's): the pod's (POD_NAMESPACE, from the downward API), else istio's. */
export function replicaNamespace(config: ServeConfig): string {
  return process.env.POD_NAMESPACE || config.istioNamespace;
}

/** This replica's name: WorkloadEntry ownership and istioctl's control-plane ID (the pod name in Kubernetes). */
export function instanceName(config: ServeConfig): string {
  return config.instanceId || process.env.POD_NAME || hostname();
}

/** The xDS bench's scenarios, in the order they run (README, "Load testing"). */
export const BENCH_SCENARIOS = ['connect', 'eds', 'bulk', 'cds', 'churn', 'upstream-restart', 'reconnect', 'link-cut'] as const;
/** `meshrelay bench attack`'s loads; `upstream-restart` is the control for `group-poisoning`. */
export const BENCH_ATTACKS = ['slow-readers', 'partial-messages', 'group-poisoning', 'upstream-restart', 'csr-storm'] as const;

/** `meshrelay bench attack`: hostile loads against a relay process, a healthy VM watched (docs/RELIABILITY.md). */
export const benchAttackSchema = z.object({
  attacks: z.array(z.enum(BENCH_ATTACKS)).default([...BENCH_ATTACKS]),
  streams: z.number().int().min(1).default(1000),
  holdSeconds: z.number().min(0).default(15),
  endpointsPerService: z.number().int().min(1).default(120),
  // Passed to `meshrelay serve` as they are, e.g. "--max-buffered-mb 512".
  serveArgs: z.string().default(''),
  json: z.string().default(''),
  // A directory for the relay's CPU profile (node --cpu-prof), one per attack.
  relayCpuProf: z.string().default(''),
}).strict();

/**
 * `meshrelay bench replicas`: relay replicas behind HAProxy in front of a real istiod and its API
 * server (scripts/bench-real-istiod.sh gives both), one killed with -9 under load (docs/BENCHMARKS.md).
 */
export const benchReplicasSchema = z.object({
  // Each VM's address is 172.16.x.y (bench/xds/fleet.ts), its entry's name too: at most 65,536.
  clients: z.number().int().min(1).max(65_536).default(10_000),
  replicas: z.number().int().min(2).max(16).default(3),
  groups: z.number().int().min(1).default(4),
  protocol: z.enum(['delta', 'sotw']).default('delta'),
  workers: z.number().int().min(1).max(256).optional(),
  clientsPerAddress: z.number().int().min(1).optional(),
  connectRate: z.number().min(0).default(0),
  // The relays' WorkloadEntry grace period and replica lease: the defaults serve (istiod's 10 s grace).
  graceSeconds: z.number().int().min(1).default(10),
  leaseSeconds: z.number().int().min(1).default(15),
  // VMs of the killed replica that do not come back: a survivor must delete their entries.
  abandon: z.number().int().min(0).default(10),
  upstreamTarget: address,
  upstreamPid: z.number().int().min(0).default(0),
  upstreamKubeconfig: z.string().min(1),
  timeoutSeconds: z.number().min(1).optional(),
  json: z.string().default(''),
}).strict().superRefine((config, context) => {
  if (config.clients < config.groups) context.addIssue({ code: 'custom', path: ['groups'], message: 'cannot exceed clients' });
});

/** `meshrelay bench` (xDS): simulated VM Envoys against the relay, the upstream or the raw baseline. */
export const benchXdsSchema = z.object({
  clients: z.number().int().min(1).max(1_000_000).default(1000),
  groups: z.number().int().min(1).default(4),
  protocol: z.enum(['delta', 'sotw']).default('delta'),
  // Load-generator processes: 2, or as many as the open-file limit needs (one file per client).
  workers: z.number().int().min(1).max(256).optional(),
  // Clients sharing one source address (127.0.1.1, …): half the ephemeral port range by default.
  clientsPerAddress: z.number().int().min(1).optional(),
  profile: z.enum(['S', 'M', 'L']).default('S'),
  nackFraction: z.number().min(0).max(1).default(0.01),
  mode: z.enum(['group', 'stream', 'direct', 'baseline']).default('group'),
  compare: z.boolean().default(false),
  // With compare: which targets, in this order (default direct, group, stream and, without link or upstreamTarget, baseline).
  targets: z.array(z.enum(['direct', 'group', 'stream', 'group-workers', 'stream-workers', 'baseline'])).default([]),
  // The *-workers targets' worker processes (group and stream run one).
  relayWorkers: z.number().int().min(1).max(64).default(2),
  // How the *-workers targets' workers get connections (serve's --worker-balance; default: serve's).
  relayWorkerBalance: z.enum(['source-address', 'least-connections', 'kernel']).optional(),
  // CPU lists (taskset -c) for the targets (relay, baseline, direct's simulator) and the simulated VMs.
  relayCpus: z.string().regex(/^[0-9,-]*$/).default(''),
  clientCpus: z.string().regex(/^[0-9,-]*$/).default(''),
  target: z.union([z.literal(''), address]).default(''),
  adminUrl: z.string().default(''),
  upstreamTarget: z.union([z.literal(''), address]).default(''),
  upstreamPid: z.number().int().min(0).default(0),
  upstreamKubeconfig: z.string().default(''),
  boundEvery: z.number().int().min(0).default(0),
  verifyGroupFraction: z.number().min(0).max(1).default(0),
  connectRate: z.number().min(0).default(0),
  scenarios: z.array(z.enum(BENCH_SCENARIOS)).default([...BENCH_SCENARIOS]),
  bulkKib: z.number().min(1).default(100),
  churnRate: z.number().min(0.1).default(20),
  churnSeconds: z.number().min(0).default(5),
  // A thin link (toxiproxy) between the VMs' side and the upstream, e.g. "latency=100ms,jitter=10ms,bandwidth=1mbit":
  // direct VMs cross it themselves, a relay's upstream crosses it (an edge site).
  link: z.string().default(''),
  // The toxiproxy-server to run (default: the one scripts/build-test-peers.sh builds, else on PATH).
  toxiproxy: z.string().default(''),
  // link-cut: how long the link is cut (data stops, sockets stay open), with churn going on upstream.
  cutSeconds: z.number().min(0).default(30),
  // Each phase's limit: 120 s, or 5 ms per client where that is longer.
  timeoutSeconds: z.number().min(1).optional(),
  json: z.string().default(''),
  report: z.string().default(''),
  relayCpuProf: z.string().default(''),
}).strict().superRefine((config, context) => {
  if (config.clients < config.groups) context.addIssue({ code: 'custom', path: ['groups'], message: 'cannot exceed clients' });
  if (config.target && config.compare) context.addIssue({ code: 'custom', path: ['compare'], message: 'starts its own targets; it cannot be combined with target' });
  if (config.target && config.upstreamTarget) context.addIssue({ code: 'custom', path: ['upstreamTarget'], message: 'is what the bench puts behind its own targets; it cannot be combined with target' });
  if (config.upstreamTarget && config.mode === 'baseline' && !config.compare) context.addIssue({ code: 'custom', path: ['mode'], message: 'baseline serves the simulated mesh; it cannot run against upstreamTarget' });
  if (config.upstreamPid && !config.upstreamTarget) context.addIssue({ code: 'custom', path: ['upstreamPid'], message: 'needs upstreamTarget' });
  if (config.upstreamKubeconfig && !config.upstreamTarget) context.addIssue({ code: 'custom', path: ['upstreamKubeconfig'], message: 'needs upstreamTarget' });
  if (config.targets.length > 0 && !config.compare) context.addIssue({ code: 'custom', path: ['targets'], message: 'chooses what compare runs; give compare too (or mode for one target)' });
  if (config.link && config.targets.includes('baseline')) context.addIssue({ code: 'custom', path: ['targets'], message: 'baseline has no upstream behind it, so no link to cross' });
  if (config.link && (config.target || config.upstreamTarget)) context.addIssue({ code: 'custom', path: ['link'], message: 'is put between the bench\'s own processes; it cannot be combined with target or upstreamTarget' });
});
