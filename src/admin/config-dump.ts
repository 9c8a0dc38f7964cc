import { messageType } from '../xds/protocol/protos.js';
import { TypeUrl } from '../xds/protocol/type-urls.js';

const dumpTypes: Record<string, string> = {
  [TypeUrl.cluster]: 'envoy.config.cluster.v3.Cluster',
  [TypeUrl.endpoint]: 'envoy.config.endpoint.v3.ClusterLoadAssignment',
  [TypeUrl.listener]: 'envoy.config.listener.v3.Listener',
  [TypeUrl.route]: 'envoy.config.route.v3.RouteConfiguration',
};

/** Resources of known types as JSON for /debug/config_dump; others by size only. */
export function decodeForDump(typeUrl: string, body: Buffer): unknown {
  const typeName = dumpTypes[typeUrl];
  if (!typeName) return { typeUrl, bytes: body.length };
  const type = messageType(typeName);
  return type.toObject(type.decode(body), { longs: String, enums: String, bytes: String, defaults: false });
}

