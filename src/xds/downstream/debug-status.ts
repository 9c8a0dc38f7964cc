import { messageType } from '../protocol/protos.js';
import { metadataString } from '../protocol/node.js';
import { jsonToStruct } from '../protocol/struct.js';
import { DebugTypeUrl } from '../protocol/type-urls.js';
import type { CallerIdentity } from '../view.js';
import type { AdsSession, DebugAnswer, TypeState } from './ads-session.js';

/** envoy.service.status.v3.ConfigStatus */
const ConfigStatus = { SYNCED: 1, NOT_SENT: 2, STALE: 3, ERROR: 4 } as const;

/**
 * istiod's per-type sync state (pilot/pkg/xds/statusgen.go debugSyncStatus): ERROR while the last
 * response sent was NACKed, NOT SENT before anything was, SYNCED once the last one was ACKed.
 */
function configStatus(state: TypeState): number {
  if (state.lastNonce === '') return ConfigStatus.NOT_SENT;
  if (state.lastNack && state.lastNack.nonce === state.lastNonce) return ConfigStatus.ERROR;
  return state.nonceAcked === state.lastNonce ? ConfigStatus.SYNCED : ConfigStatus.STALE;
}

const STATUS_NAMES: Record<number, SyncState> = { 1: 'SYNCED', 2: 'NOT SENT', 3: 'STALE', 4: 'ERROR' };
export type SyncState = 'SYNCED' | 'NOT SENT' | 'STALE' | 'ERROR';

/** The same, as istioctl prints it. */
export function syncState(state: TypeState): SyncState {
  return STATUS_NAMES[configStatus(state)]!;
}

const timestamp = (epochMs: number) => ({ seconds: Math.floor(epochMs / 1000), nanos: (epochMs % 1000) * 1e6 });

/**
 * `istio.io/debug/syncz` for the VMs connected to this relay, as istiod answers it for its own:
 * one ClientConfig per stream, with its node (id, cluster, namespace, Istio version) and each type's
 * status, so `istioctl proxy-status --xds-address <relay>` lists them.
 */
export function debugSyncz(sessions: Iterable<AdsSession>, namespace: string | undefined): DebugAnswer['resources'] {
  const clientConfig = messageType('envoy.service.status.v3.ClientConfig');
  const out: DebugAnswer['resources'] = [];
  for (const session of sessions) {
    const node = session.node;
    if (!node || !session.attachment) continue;
    if (namespace !== undefined && node.namespace !== namespace) continue;
    const configs = [...session.types].sort(([a], [b]) => a.localeCompare(b)).map(([typeUrl, state]) => ({
      type_url: typeUrl,
      config_status: configStatus(state),
      ...(state.sentAt !== undefined ? { last_updated: timestamp(state.sentAt) } : {}),
      ...(state.lastNack && state.lastNack.nonce === state.lastNonce
        ? { error_state: { last_update_attempt: timestamp(Date.parse(state.lastNack.at)), details: state.lastNack.message } } : {}),
    }));
    const body = clientConfig.encode({
      node: {
        id: node.id,
        metadata: jsonToStruct({
          CLUSTER_ID: metadataString(node, 'CLUSTER_ID'),
          NAMESPACE: node.namespace,
          ISTIO_VERSION: metadataString(node, 'ISTIO_VERSION'),
        }),
      },
      generic_xds_configs: configs,
    }).finish();
    out.push({ name: node.id, typeUrl: DebugTypeUrl.clientConfig, body: Buffer.from(body) });
  }
  return out;
}

/**
 * Who may see which VMs (istiod's ENABLE_DEBUG_ENDPOINT_AUTH): callers from the system namespace
 * see every VM, others only their own namespace's; undefined means every VM.
 */
export function visibleNamespace(caller: CallerIdentity, systemNamespace: string): string | undefined {
  return caller.namespace === systemNamespace ? undefined : caller.namespace;
}
