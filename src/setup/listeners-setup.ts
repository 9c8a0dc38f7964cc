import { authenticateStreamCaller } from '../ca/authenticator.js';
import { registerCaService } from '../ca/ca-service.js';
import type { CaSubsystem } from '../ca/ca-setup.js';
import { FileServingCertificate, type ServingCertificate } from '../ca/serving-certificate.js';
import type { TokenVerifier } from '../ca/authenticator.js';
import type { ServeConfig } from '../config/schema.js';
import type { Disposer } from '../disposer.js';
import type { AdmissionControl } from '../limits/admission-control.js';
import { defaultBufferBudgetMb } from '../limits/memory-limit.js';
import { fullCollection, MemoryReclaimer } from '../limits/memory-reclaimer.js';
import type { Logger } from '../log.js';
import { BufferBudget } from '../transport/buffer-budget.js';
import type { ConnectionGate } from '../transport/connection-gate.js';
import { EventLoopStalls } from '../transport/event-loop-stalls.js';
import { GrpcServer } from '../transport/grpc-server.js';
import { parseListenAddress, type ListenAddress } from '../transport/listen-address.js';
import type { AdsService } from '../xds/downstream/ads-service.js';
import type { StreamAuthenticator } from '../xds/view.js';
import type { WorkerLink } from '../cluster/worker-link.js';
import type { ListenerName } from '../cluster/worker-protocol.js';
import type { TlsOptions } from '../transport/grpc-server.js';

export interface Listeners {
  servers: GrpcServer[];
  xds: ListenAddress | undefined;
  tls: ListenAddress | undefined;
  serving: ServingCertificate | undefined;
  bufferBudget: BufferBudget;
  reclaimer: MemoryReclaimer;
}

/** A collection is asked for once an eighth of the budget was released, a second after, at most every 3 s. */
const RECLAIM_SHARE = 1 / 8;
const RECLAIM_SETTLE_MS = 1000;
const RECLAIM_MIN_INTERVAL_MS = 3000;

/**
 * The VM-facing listeners. xDS and the CA share each one, as on istiod's 15012 (and 15010 for
 * local development); on the TLS listener every xDS stream proves who it is first.
 */
export async function setUpListeners(
  config: ServeConfig,
  parts: { ads: AdsService; ca: CaSubsystem | undefined; tokenReview: TokenVerifier | undefined; csrAdmission: AdmissionControl; worker: WorkerLink | undefined; gate: ConnectionGate },
  log: Logger,
  disposer: Disposer,
): Promise<Listeners> {
  const { ads, ca, csrAdmission } = parts;
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
  const budgetBytes = (config.maxBufferedMb ?? defaultBufferBudgetMb()) * 1024 * 1024;
  const reclaimer = new MemoryReclaimer({
    thresholdBytes: budgetBytes * RECLAIM_SHARE, settleMs: RECLAIM_SETTLE_MS, minIntervalMs: RECLAIM_MIN_INTERVAL_MS, collect: fullCollection(),
  });
  disposer.defer(() => reclaimer.close());
  const bufferBudget = new BufferBudget(budgetBytes, (bytes) => reclaimer.released(bytes));
  const stalls = new EventLoopStalls();
  disposer.defer(() => stalls.close());
  const newServer = (authenticate?: StreamAuthenticator) => {
    const server = new GrpcServer({
      maxMessageBytes: config.maxMessageBytes,
      bufferBudget, partialMessageTimeoutMs: config.partialMessageTimeoutSeconds * 1000,
      maxStreamsPerConnection: config.maxStreamsPerConnection,
      maxConnectionMemoryMb: config.maxConnectionMemoryMb,
      gate: parts.gate,
      stalls,
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
    if (ca) registerCaService(server, ca.service, ca.stats, log.child({ component: 'ca' }), csrAdmission);
    servers.push(server);
    disposer.defer(() => server.close(0));
    return server;
  };
  // A worker whose coordinator accepts binds nothing and is handed its share of the connections;
  // with kernel balance it listens, and node:cluster shares one listening socket among the workers.
  const bind = async (server: GrpcServer, name: ListenerName, address: string, tls?: TlsOptions) => {
    if (parts.worker?.handedConnections) return parts.worker.serve(name, server.adopt(tls).accept);
    return server.listen(parseListenAddress(address), tls);
  };
  const xds = config.xdsListen ? await bind(newServer(), 'xds', config.xdsListen) : undefined;
  let tls: ListenAddress | undefined;
  if (config.tlsListen && serving) {
    // Like istiod's 15012: every xDS stream proves who it is (workload certificate, or a token),
    // and may only ask for its own namespace and service account.
    const tokens = ca?.tokens ?? parts.tokenReview;
    const trustedRelays = new Set(config.trustedRelays);
    const authenticate: StreamAuthenticator | undefined = config.xdsIdentityCheck
      ? (call) => authenticateStreamCaller(call, { trustDomain: config.trustDomain, trustedRelays, ...(tokens ? { tokens } : {}) })
      : undefined;
    const server = newServer(authenticate);
    tls = await bind(server, 'tls', config.tlsListen, serving.current());
    serving.onChange((certificate) => server.updateTls(certificate));
  }
  return { servers, xds, tls, serving, bufferBudget, reclaimer };
}
