import { vmNode } from '../../src/sim/vm-node.js';

/** The VM of index i: G groups that differ in their app label (so in their aggregation key). */
export function clientNode(index: number, groups: number) {
  const group = index % groups;
  const ip = `172.16.${(index >> 8) & 255}.${index & 255}`;
  return vmNode({ name: `vm-${index}`, ip, namespace: 'vm', serviceAccount: `vm-app-${group}`, labels: { app: `vm-app-${group}`, version: 'v1' } });
}

/** With --bound-every K, VMs K-1, 2K-1, … are the ones config is bound to by address (scripts/bench-real-istiod.sh binds them). */
export function isBound(index: number, boundEvery: number): boolean {
  return boundEvery > 0 && index % boundEvery === boundEvery - 1;
}
