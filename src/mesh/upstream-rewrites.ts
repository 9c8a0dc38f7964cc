import type { ServeConfig } from '../config/schema.js';
import type { ResourceUpdate } from '../xds/cache/resource-cache.js';
import { TypeUrl } from '../xds/protocol/type-urls.js';
import { GlobalNames } from './global-names.js';
import { repairClusterSni } from './sni-repair.js';

/**
 * Rewrites applied to upstream resources as they enter a group's cache (once per group and
 * version): SNI repair and the legacy `.global` bridge. Untouched resources keep their bytes.
 */
export function upstreamRewrites(config: ServeConfig): ((typeUrl: string, update: ResourceUpdate) => ResourceUpdate) | undefined {
  const globalNames = config.legacyGlobalNames ? new GlobalNames(config.clusterDomain) : undefined;
  if (!config.repairSni && !globalNames) return undefined;
  return (typeUrl, update) => {
    let body = update.body;
    if (typeUrl === TypeUrl.cluster) {
      if (globalNames) body = globalNames.cluster(body);
      if (config.repairSni) body = repairClusterSni(body);
    } else if (typeUrl === TypeUrl.route && globalNames) {
      body = globalNames.routes(body);
    }
    return body === update.body ? update : { ...update, body, version: update.version ? `${update.version}~relay` : '' };
  };
}

