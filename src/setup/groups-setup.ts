import type { ServeConfig } from '../config/schema.js';
import type { Disposer } from '../disposer.js';
import { setUpAddressKeying, type AddressKeying } from '../k8s/address-binding-watch.js';
import { groupTokenIssuer } from '../k8s/group-token-issuer.js';
import type { Logger } from '../log.js';
import type { NetworkTopology } from '../mesh/network-topology.js';
import { NetworkView } from '../mesh/network-view.js';
import { upstreamRewrites } from '../mesh/upstream-rewrites.js';
import { CacheSnapshotStore, restoreInto, snapshotSiblings } from '../persistence/cache-snapshot.js';
import { SnapshotSchedule } from '../persistence/snapshot-schedule.js';
import type { BackoffPolicy } from '../transport/backoff.js';
import type { ResourceCache } from '../xds/cache/resource-cache.js';
import type { ConnectionPool } from '../xds/upstream/connection-pool.js';
import { GroupRegistry } from '../xds/upstream/group-registry.js';

export interface GroupSide {
  groups: GroupRegistry;
  /** How group keys take VM addresses, and the Kubernetes source of address-bound config. */
  addressKeying: AddressKeying;
  snapshots: CacheSnapshotStore | undefined;
  snapshotSchedule: SnapshotSchedule | undefined;
}

/**
 * The upstream groups: how VMs are keyed into them, what their upstream streams ask for and how,
 * and the cache snapshot they start from and are saved to.
 */
export async function setUpGroups(
  config: ServeConfig,
  /** `snapshotRoot`: a worker's snapshot directory is `<root>/worker-<index>` (cluster/worker-share.ts). */
  parts: { pool: ConnectionPool; topology: NetworkTopology; snapshotRoot?: string },
  backoff: BackoffPolicy,
  log: Logger,
  disposer: Disposer,
): Promise<GroupSide> {
  const rewrites = upstreamRewrites(config);
  const snapshotRoot = parts.snapshotRoot ?? config.cacheSnapshotDir;
  const snapshots = config.cacheSnapshotDir
    ? new CacheSnapshotStore(config.cacheSnapshotDir, log.child({ component: 'snapshot' }), config.cacheSnapshotMaxMb * 1024 * 1024, snapshotSiblings(snapshotRoot, config.cacheSnapshotDir))
    : undefined;
  snapshots?.load();
  const addressKeying = await setUpAddressKeying({
    ...config, groupModeUsed: config.mode === 'group' || Object.values(config.modeByNamespace).includes('group'),
  }, log.child({ component: 'address-bindings' }), backoff);
  if (addressKeying.watch) disposer.defer(() => addressKeying.watch?.close());
  const groups = new GroupRegistry({
    pool: parts.pool,
    protocol: config.upstreamProtocol,
    defaultMode: config.mode,
    modeByNamespace: config.modeByNamespace,
    rules: {
      perInstanceMetadata: config.perInstanceMetadata, perInstanceLabels: config.perInstanceLabels,
      ...(addressKeying.addressKey ? { addressKey: addressKeying.addressKey } : {}),
    },
    backoff,
    lingerMs: config.groupLingerSeconds * 1000,
    streamLingerMs: config.streamLingerSeconds * 1000,
    firstResponseTimeoutMs: config.upstreamFirstResponseTimeoutSeconds * 1000,
    verifyFraction: config.verifyGroupFraction,
    maxGroups: config.maxGroups,
    responseMemoMb: config.responseMemoMb,
    groupCreation: { ratePerSecond: config.groupCreationRate, burst: config.groupCreationBurst },
    absentNames: { perVm: config.maxAbsentNamesPerVm, perGroup: config.maxAbsentNamesPerGroup, graceMs: config.absentNameGraceSeconds * 1000 },
    ...(config.groupIdentity === 'token-request' ? { groupTokens: groupTokenIssuer(config.kubeconfig) } : {}),
    ...(rewrites ? { transformUpstream: rewrites } : {}),
    ...(snapshots ? {
      prepareCache: (key: string, cache: ResourceCache) => {
        const saved = snapshots.claim(key);
        if (saved) restoreInto(cache, saved);
      },
    } : {}),
    ...(config.sharedUpstreamView ? {
      sharedNetworks: { relayNetwork: config.network, viewFor: (group, network, memo) => new NetworkView(group, network, parts.topology, memo) },
    } : {}),
    log: log.child({ component: 'upstream' }),
  });
  disposer.defer(() => groups.close());
  addressKeying.watch?.onChange(() => groups.rekey());
  let snapshotSchedule: SnapshotSchedule | undefined;
  if (snapshots) {
    const schedule = snapshotSchedule = new SnapshotSchedule(snapshots, { groups: () => groups.list() }, config.cacheSnapshotIntervalSeconds * 1000, config.groupLingerSeconds * 1000, log.child({ component: 'snapshot' }));
    disposer.defer(() => schedule.close());
  }
  return { groups, addressKeying, snapshots, snapshotSchedule };
}
