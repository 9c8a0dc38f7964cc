import { structToJson } from '../xds/protocol/struct.js';
import type { NetworkTopology } from './network-topology.js';
import type { EndpointLocation, LbEndpointObject } from './split-horizon.js';

/**
 * Where an endpoint from upstream EDS lives, in DESIGN §5's order as far as EDS shows it: a network
 * the upstream states (`istio.network` metadata), else the network whose `fromRegistry` names the
 * cluster id in `istio.workload` (`name;ns;app;version;cluster`), else the first `fromCidr` that
 * holds its address. Unknown means "same network" — istiod's rule for an empty network.
 */
export function locateEndpoint(endpoint: LbEndpointObject, topology: NetworkTopology): EndpointLocation {
  const istio = structToJson(endpoint.metadata?.filter_metadata?.istio);
  const clusterId = typeof istio.workload === 'string' ? istio.workload.split(';')[4] ?? '' : '';
  if (typeof istio.network === 'string' && istio.network) return { network: istio.network, clusterId };
  const fromRegistry = clusterId ? topology.networkOfRegistry(clusterId) : undefined;
  if (fromRegistry) return { network: fromRegistry, clusterId };
  const address = endpoint.endpoint?.address?.socket_address?.address ?? '';
  return { network: topology.networkOfAddress(address) ?? '', clusterId };
}
