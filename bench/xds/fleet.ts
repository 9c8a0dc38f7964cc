import { vmNode } from '../../src/sim/vm-node.js';
import type { JsonValue } from '../../src/xds/protocol/struct.js';

/** The VM of index i: G groups that differ in their app label (so in their aggregation key); `extra` node metadata. */
export function clientNode(index: number, groups: number, extra: Record<string, JsonValue> = {}) {
  const group = index % groups;
  return vmNode({ name: `vm-${index}`, ip: clientAddress(index), namespace: 'vm', serviceAccount: clientServiceAccount(group), labels: { app: `vm-app-${group}`, version: 'v1' }, extra });
}

/** VM i's address (its INSTANCE_IPS; never connected to). */
export function clientAddress(index: number): string {
  return `172.16.${(index >> 8) & 255}.${index & 255}`;
}

/** The service account of a group's VMs. */
export function clientServiceAccount(group: number): string {
  return `vm-app-${group}`;
}

/** With --bound-every K, VMs K-1, 2K-1, … are the ones config is bound to by address (scripts/bench-real-istiod.sh binds them). */
export function isBound(index: number, boundEvery: number): boolean {
  return boundEvery > 0 && index % boundEvery === boundEvery - 1;
}
