import { Coordinator } from '../cluster/coordinator.js';
import { WorkerLink } from '../cluster/worker-link.js';
import { workerConfig } from '../cluster/worker-share.js';
import type { CaSubsystem } from '../ca/ca-setup.js';
import { loadConfig } from '../config/load.js';
import { serveSchema, workerBalance, type ServeConfig } from '../config/schema.js';
import { cpuLimit } from '../limits/cpu-limit.js';
import { planConnectionCapacity, type ConnectionCapacity } from '../limits/connection-capacity.js';
import { openFileLimit } from '../limits/open-files.js';
import { createLogger, type Logger } from '../log.js';
import { Relay, type RelayAddresses } from '../relay.js';
import { formatAddress } from '../transport/listen-address.js';
import { onTerminate } from './signals.js';

function caLines(summary: CaSubsystem['summary'] | undefined): string[] {
  if (!summary) return ['  CA:                                 off'];
  if (summary.mode === 'forward') return [`  CA:                                 forwarding CreateCertificate to ${summary.upstream}`];
  return [
    `  CA:                                 signing locally; root certificate ${summary.rootCertFile}`,
    ...(summary.tokenIssuer === 'meshrelay-dev'
      ? ['  dev token for a CSR:                npm run -s token -- --namespace vm --service-account vm-sa']
      : []),
  ];
}

/** What `serve` prints once it serves (the bench and tests read the addresses from it). */
function servingLines(config: ServeConfig, addresses: RelayAddresses, embedded: boolean, ca: CaSubsystem['summary'] | undefined, capacity: ConnectionCapacity): string {
  const { workers } = capacity;
  const { xds, tls, admin, upstream } = addresses;
  const lines = [
    'meshrelay is serving.',
    xds ? `  xDS (plaintext ADS, SotW + Delta):  ${formatAddress(xds)}` : '',
    tls ? `  xDS (TLS):                          ${formatAddress(tls)}` : '',
    admin ? `  admin:                              http://${formatAddress(admin)}/debug/syncz  /debug/groups  /readyz` : '',
    `  workers:                            ${workers}${workers > 1 ? ` processes (${workerBalance(config)})` : ' (this process)'}`,
    `  connections:                        ${capacity.reason}`,
    `  accept queue:                       ${capacity.acceptQueue.note}`,
    `  upstream:                           ${upstream}${embedded ? ' (embedded simulated istiod)' : ''} via ${config.upstreamProtocol}, ${config.mode} mode`,
    ...caLines(ca),
    xds ? `Point an ADS client at ${formatAddress(xds)} with Istio VM node metadata (NAMESPACE, SERVICE_ACCOUNT, NETWORK...).` : '',
  ];
  return `${lines.filter(Boolean).join('\n')}\n`;
}

/** A worker: one relay over the connections its coordinator hands it, stopped when told. */
async function runWorker(config: ServeConfig, link: WorkerLink, log: Logger): Promise<void> {
  // Ctrl-C reaches the whole process group; the coordinator decides when workers stop.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => {});
  const relay = await Relay.start({ config: workerConfig(config, link.spec), log, worker: link, capacity: link.spec.capacity });
  link.onAccept((accepting) => relay.setAccepting(accepting));
  relay.connections.onChange((open) => link.reportLoad(open));
  const stop = (graceMs: number) => relay.stop(graceMs).then(() => process.exit(0), (error: unknown) => {
    log.error({ err: error }, 'error while stopping');
    process.exit(1);
  });
  link.onStop(stop);
  // The coordinator is gone (killed): nobody hands out connections or reads views any more.
  process.on('disconnect', () => void stop(0));
}

export async function runServe(argv: string[]): Promise<void> {
  const config = loadConfig(serveSchema, argv);
  const log = createLogger(config.logLevel);
  const link = WorkerLink.fromEnvironment();
  if (link) return runWorker(config, link, log.child({ worker: link.spec.index }));
  const graceMs = config.shutdownGraceSeconds * 1000;
  const capacity = planConnectionCapacity({ cores: cpuLimit(), openFileLimit: openFileLimit(), workers: config.workers, maxConnections: config.maxConnections });
  log.info({ workers: capacity.workers, connections: capacity.pod, perWorker: capacity.perProcess, openFileLimit: capacity.openFileLimit }, capacity.reason);
  if (!capacity.acceptQueue.fitsPod) log.warn({ acceptQueue: capacity.acceptQueue.length, limitedBy: capacity.acceptQueue.limitedBy, connections: capacity.pod }, capacity.acceptQueue.note);
  if (capacity.workers > 1) {
    const coordinator = await Coordinator.start(config, capacity, log.child({ component: 'coordinator' }));
    process.stdout.write(servingLines(config, coordinator.addresses, coordinator.embedded, coordinator.caSummary, capacity));
    onTerminate(log, graceMs, () => coordinator.stop(graceMs));
    return;
  }
  const relay = await Relay.start({ config, log, capacity });
  process.stdout.write(servingLines(config, relay.addresses, relay.embedded !== undefined, relay.ca?.summary, capacity));
  onTerminate(log, graceMs, () => relay.stop(graceMs));
}
