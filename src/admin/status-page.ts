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

function expiryRows(expiries: { root: Date; chain: Date } | undefined): string[][] {
  return expiries ? [['root expires', escape(expiries.root.toISOString())], ['signing CA expires', escape(expiries.chain.toISOString())]] : [];
}

/**
 * The admin port's `/`: the relay at a glance for a person — upstream, groups with their members,
 * VMs with each type's sync state and last NACK, topology, CA. Read-only, no external assets, and
 * it reloads itself. The admin port must stay cluster-internal (README).
 */
export function renderStatusPage(relay: RelayAdminView): string {
  const { ready, detail } = relay.readiness();
  const groups = relay.groups.list();
  const vms = relay.ads.syncStatus();
  const membersByGroup = new Map<string, string[]>();
  for (const vm of vms) membersByGroup.set(vm.key, [...(membersByGroup.get(vm.key) ?? []), vm.proxy]);
  const upstream = [
    ['upstream', escape(relay.addresses.upstream)],
    ['ready', badge(ready ? 'READY' : 'NOT READY')],
    ['connected to the upstream', badge(detail.upstreamConnected ? 'YES' : 'NO')],
    ['degraded (serving a snapshot)', badge(detail.degraded ? 'YES' : 'NO')],
    ['upstream streams', escape(relay.groups.upstreamStreams())],
  ];
  const groupRows = groups.map((group) => [
    `<code>${escape(group.key)}</code>`, escape(group.mode), badge(group.phase.toUpperCase()), badge(group.upstream.stats.state.toUpperCase()),
    escape(group.cache.size()), (membersByGroup.get(group.key) ?? []).map((member) => `<code>${escape(member)}</code>`).join('<br>') || '—',
  ]);
  const vmRows = vms.map((vm) => [
    `<code>${escape(vm.proxy)}</code>`, escape(vm.protocol), badge(vm.phase.toUpperCase()),
    Object.entries(vm.types).map(([type, state]) => `${escape(type)} ${badge(state.status)}`).join(' '),
    Object.entries(vm.types).filter(([, state]) => state.lastNack).map(([type, state]) => `${escape(type)}: ${escape(state.lastNack!.message)} (${escape(state.lastNack!.at)})`).join('<br>') || '—',
  ]);
  const networks = relay.topology.describe().networks;
  const networkRows = Object.entries(networks).map(([name, network]) => [
    escape(name), escape(network.registries.join(', ') || '—'), escape(network.cidrs.join(', ') || '—'),
    escape(network.gateways.map((gateway) => `${gateway.address}:${gateway.port}`).join(', ') || '—'),
  ]);
  const ca = relay.ca;
  const caRows = ca ? [
    ['mode', escape(ca.summary.mode)],
    ...(ca.summary.rootCertFile ? [['root', `<code>${escape(ca.summary.rootCertFile)}</code>`]] : []),
    ...(ca.summary.upstream ? [['forwards to', escape(ca.summary.upstream)]] : []),
    ...(ca.summary.tokenIssuer ? [['tokens from', escape(ca.summary.tokenIssuer)]] : []),
    ...expiryRows(ca.expiries?.()),
    ['CSRs received / issued', `${escape(ca.stats.csrs)} / ${escape(ca.stats.issued)}`],
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
<h2>Groups (${groups.length})</h2>${table(['key', 'mode', 'phase', 'upstream stream', 'cached resources', 'members'], groupRows, 'No groups: no VM is connected.')}
<h2>VMs (${vms.length})</h2>${table(['proxy', 'protocol', 'phase', 'sync state per type', 'last NACK'], vmRows, 'No VM is connected.')}
<h2>Topology</h2>${table(['network', 'registries', 'CIDRs', 'gateways'], networkRows, 'No networks configured.')}
<h2>CA</h2>${ca ? table(['', ''], caRows, '') : '<p class="empty">No CA on this relay (caMode off).</p>'}
</body></html>
`;
}
