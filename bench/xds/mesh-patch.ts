import type { MeshModel, MeshService } from '../../src/sim/mesh-model.js';

/**
 * A mesh sent to a child process (the simulated istiod, the raw baseline) as the services that
 * changed since the last one sent. The whole model of the M profile is 36k endpoints, ~80 ms of
 * JSON on both sides; the bench's churn sends one every 250 ms. Receiving only the replaced
 * services also keeps the others the same objects, which is what the simulator's per-service
 * rendering memo keys on (src/sim/config-generators.ts).
 */
export interface MeshPatch {
  /** Everything but the services: small. */
  rest: Omit<MeshModel, 'services'>;
  serviceCount: number;
  /** [index, service] for each service not the one last sent at that index. */
  services: Array<[number, MeshService]>;
}

/** The sending side: remembers what it last sent. */
export class MeshPatcher {
  private last: readonly MeshService[] = [];

  patch(mesh: MeshModel): MeshPatch {
    const { services, ...rest } = mesh;
    const changed: Array<[number, MeshService]> = [];
    services.forEach((service, index) => {
      if (this.last[index] !== service) changed.push([index, service]);
    });
    this.last = services;
    return { rest, serviceCount: services.length, services: changed };
  }
}

/** The receiving side: the mesh the patch describes, sharing the unchanged services with `current`. */
export function applyMeshPatch(current: MeshModel | undefined, patch: MeshPatch): MeshModel {
  const sent = new Map(patch.services);
  const services: MeshService[] = [];
  for (let index = 0; index < patch.serviceCount; index++) {
    const service = sent.get(index) ?? current?.services[index];
    if (!service) throw new Error(`mesh patch leaves services missing (${patch.services.length} sent of ${patch.serviceCount})`);
    services.push(service);
  }
  return { ...patch.rest, services };
}
