import { meshSchema, type MeshModel } from '../../src/sim/mesh-model.js';

/** Config sizes per proxy (ISSUE 5): S ≈ 10 clusters / 25 kB, M ≈ 300 / 0.6 MB, L ≈ 3,000 / 9 MB. */
export const PROFILES = {
  S: { services: 10, endpointsPerService: 12 },
  M: { services: 300, endpointsPerService: 6 },
  L: { services: 3000, endpointsPerService: 25 },
} as const;

export type ProfileName = keyof typeof PROFILES;

const NAMESPACES = ['bar', 'bookinfo', 'payments', 'shop', 'vm'];

/**
 * A mesh of the profile's size on the simulated istiod's two networks: services on `net1` behind
 * the east-west gateway, so VMs on `vm-net` get them split-horizon translated, as in production.
 */
export function profileMesh(profile: ProfileName, endpointsPerService: number = PROFILES[profile].endpointsPerService): MeshModel {
  const { services } = PROFILES[profile];
  return meshSchema.parse({
    networks: {
      net1: { clusterId: 'cluster1', gateways: [{ address: '192.0.2.10', port: 15443 }] },
      'vm-net': { clusterId: 'vm', gateways: [] },
    },
    services: Array.from({ length: services }, (_, s) => ({
      name: `svc-${s}`,
      namespace: NAMESPACES[s % NAMESPACES.length],
      vip: `10.96.${(s >> 8) & 255}.${s & 255}`,
      ports: [{ port: 8000 + (s % 50), name: 'http' }],
      endpoints: Array.from({ length: endpointsPerService }, (_, e) => ({
        address: `10.${(s >> 8) & 255}.${s & 255}.${e + 1}`,
        port: 8080,
        network: e % 4 === 3 ? 'vm-net' : 'net1',
        cluster: e % 4 === 3 ? 'vm' : 'cluster1',
        locality: `us-east1/us-east1-${'abc'[e % 3]}`,
        serviceAccount: `svc-${s}`,
        labels: { app: `svc-${s}`, version: `v${e % 3}` },
      })),
    })),
  });
}
