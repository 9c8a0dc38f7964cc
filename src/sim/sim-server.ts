import type { Logger } from '../log.js';
import { GrpcServer } from '../transport/grpc-server.js';
import type { ListenAddress } from '../transport/listen-address.js';
import { AdsService } from '../xds/downstream/ads-service.js';
import type { ServeConfig } from '../config/schema.js';
import { loadMesh, type MeshModel } from './mesh-model.js';
import { SimIstiod } from './sim-istiod.js';

export interface RunningSim {
  sim: SimIstiod;
  ads: AdsService;
  server: GrpcServer;
  address: ListenAddress;
  close(): Promise<void>;
}

/** Serves the simulated istiod's ADS (SotW and Delta) on a plaintext listener, like istiod's 15010. */
export async function startSimIstiod(mesh: MeshModel, listen: ListenAddress, log: Logger): Promise<RunningSim> {
  const sim = new SimIstiod(mesh, log);
  const server = new GrpcServer({ maxMessageBytes: 64 * 1024 * 1024, maxStreamsPerConnection: 100_000, log });
  const ads = new AdsService(sim, { maxNamesPerRequest: 100_000, maxTypesPerStream: 64 }, log);
  ads.register(server);
  const address = await server.listen(listen);
  sim.startChurn(mesh.churn.ratePerSecond);
  return {
    sim,
    ads,
    server,
    address,
    close: async () => {
      sim.stopChurn();
      await server.close(0);
    },
  };
}

/** The simulated istiod of `upstream: embedded`, on a loopback port. */
export function startEmbeddedSim(config: ServeConfig, log: Logger): Promise<RunningSim> {
  const mesh = loadMesh(config.mesh || undefined);
  if (config.churnRate > 0) mesh.churn.ratePerSecond = config.churnRate;
  return startSimIstiod(mesh, { host: '127.0.0.1', port: 0 }, log.child({ component: 'sim-istiod' }));
}
