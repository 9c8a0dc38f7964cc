import type { ServeConfig } from '../config/schema.js';
import { upstreamChannelOptions, upstreamCredentials, watchUpstreamCredentials } from '../config/upstream-tls.js';
import type { Disposer } from '../disposer.js';
import type { Logger } from '../log.js';
import { startEmbeddedSim, type RunningSim } from '../sim/sim-server.js';
import { formatAddress } from '../transport/listen-address.js';
import { ConnectionPool } from '../xds/upstream/connection-pool.js';

export interface UpstreamSide {
  /** host:port of the control plane (the embedded simulator's loopback address with `upstream: embedded`). */
  target: string;
  embedded: RunningSim | undefined;
  pool: ConnectionPool;
}

/**
 * The connections to the control plane. With `upstream: embedded` a simulated istiod is started in
 * the process and reached over a real loopback gRPC connection, exactly like a remote one.
 */
/** `sharedEmbedded`: a worker's coordinator runs the simulator once for all workers; its address. */
export async function setUpUpstream(config: ServeConfig, log: Logger, disposer: Disposer, sharedEmbedded?: string): Promise<UpstreamSide> {
  let embedded: RunningSim | undefined;
  let target = sharedEmbedded ?? config.upstream;
  if (config.upstream === 'embedded' && !sharedEmbedded) {
    const sim = embedded = await startEmbeddedSim(config, log);
    target = formatAddress(sim.address);
    disposer.defer(() => sim.close());
  }
  const pool = new ConnectionPool({
    target,
    size: config.upstreamConnections,
    credentials: upstreamCredentials(config, 'xds'),
    maxReceiveMessageBytes: config.maxUpstreamMessageBytes,
    keepalive: { intervalMs: config.upstreamKeepaliveSeconds * 1000, timeoutMs: config.upstreamKeepaliveTimeoutSeconds * 1000 },
    channelOptions: upstreamChannelOptions(config, 'xds'),
  });
  disposer.defer(() => pool.close());
  const tlsWatch = watchUpstreamCredentials(config, 'xds', log.child({ component: 'upstream' }), (credentials) => pool.replaceCredentials(credentials));
  disposer.defer(() => tlsWatch.close());
  return { target, embedded, pool };
}
