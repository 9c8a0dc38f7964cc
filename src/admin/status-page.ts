import type { RelayAdminView } from './admin-view.js';

const REFRESH_SECONDS = 5;

const escape = (text: unknown) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function table(headers: string[], rows: unknown[][], empty: string): string {
  if (rows.length === 0) return `<p class="empty">${escape(empty)}</p>`;
  const head = headers.map((h) => `<th>${escape(h)}</th>`).join('');
  const body = rows.map((row) => `<tr>${row.map((cell) => `<td>${cell}</td>`).join('')}</tr>`).join('');
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

const badge = (text: string) => `<span class="badge ${escape(text.toLowerCase().replace(/\s+/g, '-'))}">${escape(text)}</span>`;

/** What the page shows, as plain data: a worker serves it as JSON and the coordinator merges the workers'. */
export interface StatusData {
  ready: boolean;
  detail: Record<string, unknown>;
  upstream: string;
  upstreamStreams: number;
  groups: Array<{ key: string; mode: string; phase: string; upstreamState: string; cachedResources: number; worker?: number }>;
  vms: Array<ReturnType<RelayAdminView['ads']['syncStatus']>[number] & { worker?: number }>;
  networks: ReturnType<RelayAdminView['topology']['describe']>['networks'];
  ca?: { mode: string; rootCertFile?: string; upstream?: string; tokenIssuer?: string; rootExpires?: string; chainExpires?: string; csrs: number; issued: number };
  /** `connections`: as the coordinator handed them out (unknown when the workers accept themselves). */
  workers?: Array<{ index: number; pid: number | undefined; state: string; connections: number | undefined }>;
}

export function statusData(relay: RelayAdminView): StatusData {
  const { ready, detail } = relay.readiness();
  const ca = relay.ca;
  const expiries = ca?.expiries?.();
  return {
    ready, detail, upstream: relay.addresses.upstream, upstreamStreams: relay.groups.upstreamStreams(),
    groups: relay.groups.list().map((group) => ({
      key: group.key, mode: group.mode, phase: group.phase, upstreamState: group.upstream.stats.state, cachedResources: group.cache.size(),
    })),
    vms: relay.ads.syncStatus(),
    networks: relay.topology.describe().networks,
    ...(ca ? {
      ca: {
        mode: ca.summary.mode,
        ...(ca.summary.rootCertFile ? { rootCertFile: ca.summary.rootCertFile } : {}),
        ...(ca.summary.upstream ? { upstream: ca.summary.upstream } : {}),
        ...(ca.summary.tokenIssuer ? { tokenIssuer: ca.summary.tokenIssuer } : {}),
        ...(expiries ? { rootExpires: expiries.root.toISOString(), chainExpires: expiries.chain.toISOString() } : {}),
        csrs: ca.stats.csrs, issued: ca.stats.issued,
      },
    } : {}),
  };
}

/**
 * The admin port's `/`: the relay at a glance for a person — upstream, workers, groups with their
 * members, VMs with each type's sync state and last NACK, topology, CA. Read-only, no external
 * assets, and it reloads itself. The admin port must stay cluster-internal (README).
 */
export function renderStatusPage(status: StatusData): string {
  const { ready, detail, groups, vms } = status;
  const membersByGroup = new Map<string, string[]>();
  for (const vm of vms) membersByGroup.set(vm.key, [...(membersByGroup.get(vm.key) ?? []), vm.proxy]);
  const workerColumn = status.workers !== undefined;
  const workerCell = (worker: number | undefined) => (workerColumn ? [escape(worker ?? '—')] : []);
  const workerHeader = workerColumn ? ['worker'] : [];
  const upstream = [
    ['upstream', escape(status.upstream)],
    ['ready', badge(ready ? 'READY' : 'NOT READY')],
    ['connected to the upstream', badge(detail.upstreamConnected ? 'YES' : 'NO')],
    ['degraded (serving a snapshot)', badge(detail.degraded ? 'YES' : 'NO')],
    ['upstream streams', escape(status.upstreamStreams)],
  ];
  const workerRows = (status.workers ?? []).map((worker) => [escape(worker.index), escape(worker.pid ?? '—'), badge(worker.state.toUpperCase()), escape(worker.connections ?? '—')]);
  const groupRows = groups.map((group) => [
    `<code>${escape(group.key)}</code>`, ...workerCell(group.worker), escape(group.mode), badge(group.phase.toUpperCase()), badge(group.upstreamState.toUpperCase()),
    escape(group.cachedResources), (membersByGroup.get(group.key) ?? []).map((member) => `<code>${escape(member)}</code>`).join('<br>') || '—',
  ]);
  const vmRows = vms.map((vm) => [
    `<code>${escape(vm.proxy)}</code>`, ...workerCell(vm.worker), escape(vm.protocol), badge(vm.phase.toUpperCase()),
    Object.entries(vm.types).map(([type, state]) => `${escape(type)} ${badge(state.status)}`).join(' '),
    Object.entries(vm.types).filter(([, state]) => state.lastNack).map(([type, state]) => `${escape(type)}: ${escape(state.lastNack!.message)} (${escape(state.lastNack!.at)})`).join('<br>') || '—',
  ]);
  const networkRows = Object.entries(status.networks).map(([name, network]) => [
    escape(name), escape(network.registries.join(', ') || '—'), escape(network.cidrs.join(', ') || '—'),
    escape(network.gateways.map((gateway) => `${gateway.address}:${gateway.port}`).join(', ') || '—'),
  ]);
  const ca = status.ca;
  const caRows = ca ? [
    ['mode', escape(ca.mode)],
    ...(ca.rootCertFile ? [['root', `<code>${escape(ca.rootCertFile)}</code>`]] : []),
    ...(ca.upstream ? [['forwards to', escape(ca.upstream)]] : []),
    ...(ca.tokenIssuer ? [['tokens from', escape(ca.tokenIssuer)]] : []),
    ...(ca.rootExpires ? [['root expires', escape(ca.rootExpires)], ['signing CA expires', escape(ca.chainExpires)]] : []),
    ['CSRs received / issued', `${escape(ca.csrs)} / ${escape(ca.issued)}`],
  ] : [];
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="${REFRESH_SECONDS}">
<title>meshrelay status</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1b1f24}h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.6rem}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}code{font-size:12px}.empty{color:#57606a}.badge{display:inline-block;padding:0 .4rem;border-radius:.6rem;font-size:12px;background:#eaeef2}
.synced,.ready,.serving,.streaming,.yes{background:#dafbe1}.stale,.connecting,.lingering,.backoff,.not-sent{background:#fff8c5}.error,.not-ready,.refused,.closed{background:#ffebe9}
</style></head><body>
<h1>meshrelay</h1>
<p>Refreshes every ${REFRESH_SECONDS} s. Read-only; JSON at <code>/debug/syncz</code>, <code>/debug/groups</code>, <code>/readyz</code>, <code>/metrics</code>.</p>
<h2>Upstream</h2>${table(['', ''], upstream, '')}
${status.workers ? `<h2>Workers (${status.workers.length})</h2>${table(['worker', 'pid', 'state', 'connections'], workerRows, '')}` : ''}
<h2>Groups (${groups.length})</h2>${table(['key', ...workerHeader, 'mode', 'phase', 'upstream stream', 'cached resources', 'members'], groupRows, 'No groups: no VM is connected.')}
<h2>VMs (${vms.length})</h2>${table(['proxy', ...workerHeader, 'protocol', 'phase', 'sync state per type', 'last NACK'], vmRows, 'No VM is connected.')}
<h2>Topology</h2>${table(['network', 'registries', 'CIDRs', 'gateways'], networkRows, 'No networks configured.')}
<h2>CA</h2>${ca ? table(['', ''], caRows, '') : '<p class="empty">No CA on this relay (caMode off).</p>'}
</body></html>
`;
}
