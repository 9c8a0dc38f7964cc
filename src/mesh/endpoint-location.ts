import { structToJson } from '../xds/protocol/struct.js';
import type { NetworkTopology } from './network-topology.js';
import type { EndpointLocation, LbEndpointObject } from './split-horizon.js';

/**
 * Where an endpoint from upstream EDS lives. istiod knows a pod's network from its label and a
 * WorkloadEntry's from its spec, before falling back to meshNetworks; the relay sees only EDS, so
 * it takes, most specific first: a network the upstream states (`istio.network` metadata), the
 * first `fromCidr` holding the address (how VM subnets are described — VMs share their cluster's
 * registry id with its pods), then the network whose `fromRegistry` names the cluster id in
 * `istio.workload` (`name;ns;app;version;cluster`). Unknown means "same network", istiod's rule for
 * an empty network.
 */
export function locateEndpoint(endpoint: LbEndpointObject, topology: NetworkTopology): EndpointLocation {
  const istio = structToJson(endpoint.metadata?.filter_metadata?.istio);
  const clusterId = typeof istio.workload === 'string' ? istio.workload.split(';')[4] ?? '' : '';
  if (typeof istio.network === 'string' && istio.network) return { network: istio.network, clusterId };
  const fromCidr = topology.networkOfAddress(endpoint.endpoint?.address?.socket_address?.address ?? '');
  if (fromCidr) return { network: fromCidr, clusterId };
  return { network: (clusterId && topology.networkOfRegistry(clusterId)) || '', clusterId };
}
