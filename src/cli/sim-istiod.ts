import { loadConfig } from '../config/load.js';
import { simSchema } from '../config/schema.js';
import { createLogger } from '../log.js';
import { loadMesh } from '../sim/mesh-model.js';
import { startSimIstiod } from '../sim/sim-server.js';
import { formatAddress, parseListenAddress } from '../transport/listen-address.js';
import { onTerminate } from './signals.js';

export async function runSimIstiod(argv: string[]): Promise<void> {
  const config = loadConfig(simSchema, argv);
  const log = createLogger(config.logLevel);
  const mesh = loadMesh(config.mesh || undefined);
  if (config.churnRate > 0) mesh.churn.ratePerSecond = config.churnRate;
  const running = await startSimIstiod(mesh, parseListenAddress(config.listen), log);
  process.stdout.write(`simulated istiod serving ADS (SotW + Delta) on ${formatAddress(running.address)}: ${mesh.services.length} services, networks ${Object.keys(mesh.networks).join(', ')}\n`);
  onTerminate(log, 2000, () => running.close());
}
