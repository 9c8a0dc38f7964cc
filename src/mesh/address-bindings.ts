import { createHash } from 'node:crypto';
import { canonicalJson } from '../xds/upstream/aggregation-key.js';
import type { JsonValue } from '../xds/protocol/struct.js';

/**
 * Configuration istiod binds to a proxy by its address rather than by its labels, namespace or
 * service account (docs/ADDRESS-BINDING.md): the "service targets" it finds for the proxy's IPs.
 *  - ServiceEntry endpoints given by address, with no workloadSelector (serviceentry controller,
 *    pilot/pkg/serviceregistry/serviceentry/controller.go, GetProxyServiceTargets);
 *  - WorkloadEntries at the address: their labels, service account, network and locality become
 *    the proxy's (pilot/pkg/model/context.go, SetWorkloadLabels / SetServiceTargets), and every
 *    selector matching those labels applies;
 *  - Kubernetes EndpointSlices whose endpoints name the address without a Pod behind it (a Service
 *    without selector, the mesh-expansion shape; pilot/pkg/serviceregistry/kube/controller/endpointslice.go).
 * Auto-registered WorkloadEntries are left out: they are made from the WorkloadGroup template and
 * the VM's own labels, which the aggregation key already holds, so they are alike for a group.
 */
export interface AddressBinding {
  kind: 'ServiceEntry' | 'WorkloadEntry' | 'EndpointSlice';
  /** namespace/name of the object that binds the address (shown, not digested for WorkloadEntries). */
  source: string;
  /**
   * What of the object's identity shapes the proxy's config: namespace/name of a ServiceEntry or
   * Service (its hosts and policies follow it), only the namespace of a WorkloadEntry (two VMs'
   * entries alike but for their names configure them alike).
   */
  scope: string;
  /** What of the object shapes the proxy's config (never the address or the object's own name where they differ per VM). */
  content: JsonValue;
}

interface ObjectMeta {
  name?: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface ServiceEntryObject {
  metadata?: ObjectMeta;
  spec?: {
    hosts?: string[];
    ports?: JsonValue[];
    location?: string;
    resolution?: string;
    workloadSelector?: JsonValue;
    endpoints?: Array<{ address?: string; labels?: Record<string, string>; ports?: JsonValue; network?: string; locality?: string; weight?: number; serviceAccount?: string }>;
  };
}

export interface WorkloadEntryObject {
  metadata?: ObjectMeta;
  spec?: { address?: string; labels?: Record<string, string>; ports?: JsonValue; network?: string; locality?: string; weight?: number; serviceAccount?: string };
}

export interface EndpointSliceObject {
  metadata?: ObjectMeta;
  ports?: JsonValue[] | null;
  endpoints?: Array<{ addresses?: string[]; targetRef?: { kind?: string } }>;
}

const AUTO_REGISTERED = 'istio.io/autoRegistrationGroup';
const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

const sourceOf = (meta: ObjectMeta | undefined) => `${meta?.namespace ?? ''}/${meta?.name ?? ''}`;
const defined = (object: Record<string, JsonValue | undefined>): JsonValue =>
  Object.fromEntries(Object.entries(object).filter(([, value]) => value !== undefined)) as JsonValue;

/** address → what binds to it, from the objects istiod reads. */
export function bindingsByAddress(input: { serviceEntries: ServiceEntryObject[]; workloadEntries: WorkloadEntryObject[]; endpointSlices: EndpointSliceObject[] }): Map<string, AddressBinding[]> {
  const out = new Map<string, AddressBinding[]>();
  const add = (address: string | undefined, binding: AddressBinding) => {
    if (!address) return;
    const list = out.get(address) ?? [];
    list.push(binding);
    out.set(address, list);
  };
  for (const entry of input.serviceEntries) {
    const spec = entry.spec ?? {};
    if (spec.workloadSelector) continue;
    for (const endpoint of spec.endpoints ?? []) {
      add(endpoint.address, {
        kind: 'ServiceEntry', source: sourceOf(entry.metadata), scope: sourceOf(entry.metadata),
        content: defined({
          hosts: spec.hosts ?? [], ports: spec.ports ?? [], location: spec.location, resolution: spec.resolution,
          labels: endpoint.labels, endpointPorts: endpoint.ports, network: endpoint.network, locality: endpoint.locality, weight: endpoint.weight, serviceAccount: endpoint.serviceAccount,
        }),
      });
    }
  }
  for (const entry of input.workloadEntries) {
    if (entry.metadata?.annotations?.[AUTO_REGISTERED]) continue;
    const spec = entry.spec ?? {};
    add(spec.address, {
      kind: 'WorkloadEntry', source: sourceOf(entry.metadata), scope: entry.metadata?.namespace ?? '',
      content: defined({ labels: spec.labels ?? {}, ports: spec.ports, network: spec.network, locality: spec.locality, weight: spec.weight, serviceAccount: spec.serviceAccount }),
    });
  }
  for (const slice of input.endpointSlices) {
    const service = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
    if (!service) continue;
    for (const endpoint of slice.endpoints ?? []) {
      if (endpoint.targetRef?.kind === 'Pod') continue;
      for (const address of endpoint.addresses ?? []) {
        const source = `${slice.metadata?.namespace ?? ''}/${service}`;
        add(address, { kind: 'EndpointSlice', source, scope: source, content: defined({ ports: slice.ports ?? [] }) });
      }
    }
  }
  for (const list of out.values()) list.sort((a, b) => `${a.kind}/${a.scope}/${canonicalJson(a.content)}`.localeCompare(`${b.kind}/${b.scope}/${canonicalJson(b.content)}`));
  return out;
}

/** A short digest of what binds to a set of addresses; '' when nothing does. */
export function bindingDigest(bindings: AddressBinding[]): string {
  if (bindings.length === 0) return '';
  const canonical = canonicalJson(bindings.map((binding) => ({ kind: binding.kind, scope: binding.scope, content: binding.content })) as JsonValue);
  return createHash('sha256').update(canonical).digest('hex').slice(0, 12);
}
