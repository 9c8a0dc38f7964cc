import { clusterName } from '../../src/mesh/istio-tls.js';
import { renderMesh } from '../../src/sim/config-generators.js';
import { serviceHost, type MeshModel, type MeshService } from '../../src/sim/mesh-model.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';

/** The changes the bench's scenarios make to the mesh. */

/** The service with its first endpoint's weight changed. */
function bumpFirstEndpoint(service: MeshService): MeshService {
  return { ...service, endpoints: service.endpoints.map((e, i) => (i === 0 ? { ...e, weight: e.weight >= 100 ? 1 : e.weight + 1 } : e)) };
}

/** One endpoint's weight changed: the smallest EDS update (≈1 KiB). */
export function changeOneEndpoint(mesh: MeshModel, step: number): MeshModel {
  const service = mesh.services[step % mesh.services.length]!;
  return { ...mesh, services: mesh.services.map((s) => (s === service ? bumpFirstEndpoint(s) : s)) };
}

/** One endpoint changed in as many services as make `kib` KiB of EDS for the VMs (or all of them). */
export function bulkChange(mesh: MeshModel, kib: number): { mesh: MeshModel; bytes: number } {
  const sizes = new Map((renderMesh(mesh, { network: 'vm-net', generator: 'envoy' }).get(TypeUrl.endpoint) ?? []).map((r) => [r.name, r.body.length]));
  const chosen = new Set<MeshService>();
  let bytes = 0;
  for (const service of mesh.services) {
    if (bytes >= kib * 1024) break;
    chosen.add(service);
    for (const { port } of service.ports) bytes += sizes.get(clusterName(port, serviceHost(service, mesh.domain))) ?? 0;
  }
  return { mesh: { ...mesh, services: mesh.services.map((s) => (chosen.has(s) ? bumpFirstEndpoint(s) : s)) }, bytes };
}

/** A new service: a CDS push (and its EDS, RDS) to every VM. */
export function addService(mesh: MeshModel, step: number): MeshModel {
  const template = mesh.services[0]!;
  return { ...mesh, services: [...mesh.services, { ...template, name: `added-${step}`, vip: `10.97.${(step >> 8) & 255}.${step & 255}` }] };
}
