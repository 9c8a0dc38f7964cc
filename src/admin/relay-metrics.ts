import { Gauge, Histogram, type Registry } from 'prom-client';
import { scrapedCounter } from './scraped-counter.js';
import { status as grpcStatus } from '@grpc/grpc-js';
import type { AdmissionControl } from '../limits/admission-control.js';
import type { MemoryReclaimer } from '../limits/memory-reclaimer.js';
import type { AdsService } from '../xds/downstream/ads-service.js';
import { shortTypeName } from '../xds/protocol/type-urls.js';
import type { GroupRegistry } from '../xds/upstream/group-registry.js';
import type { BufferBudget } from '../transport/buffer-budget.js';
import type { CacheSnapshotStore } from '../persistence/cache-snapshot.js';
import type { ConnectionGate } from '../transport/connection-gate.js';
import type { GrpcServer } from '../transport/grpc-server.js';

/**
 * The xDS side's metrics, named like istiod's where they mean the same. Values are read from the
 * live objects at scrape time, so the hot path does no bookkeeping for them.
 */
export function registerRelayMetrics(registry: Registry, parts: {
  groups: GroupRegistry; ads: AdsService; admission: Record<string, AdmissionControl>; connections: ConnectionGate; servers: GrpcServer[]; bufferBudget: BufferBudget; reclaimer: MemoryReclaimer;
  snapshots: CacheSnapshotStore | undefined; readiness: () => { detail: Record<string, unknown> };
}): void {
  const groups = parts.groups;
  new Gauge({
    name: 'meshrelay_eds_translations', help: 'EDS split-horizon translations done for shared upstream views, by downstream network (one per resource version and network, not per VM)',
    labelNames: ['network'], registers: [registry],
    collect() {
      this.reset();
      const totals = new Map<string, number>();
      for (const group of groups.list()) for (const [network, view] of group.networkViews) totals.set(network, (totals.get(network) ?? 0) + view.translations);
      for (const [network, count] of totals) this.set({ network }, count);
    },
  });
  new Gauge({
    name: 'meshrelay_upstream_streams', help: 'Upstream ADS streams open to the control plane', registers: [registry],
    collect() { this.set(groups.upstreamStreams()); },
  });
  for (const [kind, limiter] of Object.entries(parts.admission)) {
    new Gauge({
      name: `meshrelay_admission_${kind}_queued`, help: `${kind} waiting for admission`, registers: [registry],
      collect() { this.set(limiter.queued); },
    });
    new Gauge({
      name: `meshrelay_admission_${kind}_refused`, help: `${kind} refused with UNAVAILABLE since start (overload)`, registers: [registry],
      collect() { this.set(limiter.refused); },
    });
  }
  scrapedCounter(registry, 'meshrelay_upstream_received_bytes_total', 'Bytes received on upstream ADS streams (from istiod) since start', () => parts.groups.upstreamBytesReceived());
  const counters = parts.ads.counters;
  scrapedCounter(registry, 'meshrelay_xds_pushes_total', 'xDS responses written to proxies, by type (istiod: pilot_xds_pushes)',
    () => [...counters.pushes].map(([typeUrl, count]) => [{ type: shortTypeName(typeUrl) }, count] as const), ['type']);
  scrapedCounter(registry, 'meshrelay_xds_nacks_total', 'NACKs received from proxies, by type (istiod: pilot_total_xds_rejects)',
    () => [...counters.nacks].map(([typeUrl, count]) => [{ type: shortTypeName(typeUrl) }, count] as const), ['type']);
  new Gauge({
    name: 'meshrelay_cache_resources', help: 'Resources held in the upstream group caches', registers: [registry],
    collect() { this.set(groups.list().reduce((sum, group) => sum + group.cache.size(), 0)); },
  });
  const pushTime = new Histogram({
    name: 'meshrelay_xds_push_time_seconds', help: 'Time to build and write one xDS response to a proxy, by type (istiod: pilot_xds_push_time)',
    labelNames: ['type'], buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1], registers: [registry],
  });
  const convergence = new Histogram({
    name: 'meshrelay_proxy_convergence_time_seconds', help: 'From a change reaching the relay\'s cache to the response carrying it written to a proxy (istiod: pilot_proxy_convergence_time)',
    labelNames: ['type'], buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 3, 5, 10, 30], registers: [registry],
  });
  const byType = new Map<string, { type: string }>();
  counters.onPush = (typeUrl, pushSeconds, convergenceSeconds) => {
    let labels = byType.get(typeUrl);
    if (!labels) byType.set(typeUrl, labels = { type: shortTypeName(typeUrl) });
    pushTime.observe(labels, pushSeconds);
    if (convergenceSeconds !== undefined) convergence.observe(labels, convergenceSeconds);
  };
  new Gauge({
    name: 'meshrelay_upstream_stream_state', help: 'Upstream ADS streams by state (connecting: open, not answered yet; streaming; backoff; refused; idle; closed)', labelNames: ['state'], registers: [registry],
    collect() {
      this.reset();
      const counts = new Map<string, number>();
      for (const group of groups.list()) counts.set(group.upstream.stats.state, (counts.get(group.upstream.stats.state) ?? 0) + 1);
      for (const [state, count] of counts) this.set({ state }, count);
    },
  });
  scrapedCounter(registry, 'meshrelay_upstream_refusals_total', 'Upstream ADS streams istiod refused with a status retrying will not change (UNAUTHENTICATED, PERMISSION_DENIED, ...)',
    () => [...groups.refusals].map(([code, count]) => [{ code: grpcStatus[code] ?? String(code) }, count] as const), ['code']);
  new Gauge({
    name: 'meshrelay_address_bound_groups', help: 'Groups whose key carries the config istiod binds to their VMs\' addresses (or the address itself, without a config source)',
    registers: [registry],
    collect() { this.set(groups.list().filter((group) => group.fields['@address'] !== undefined).length); },
  });
  scrapedCounter(registry, 'meshrelay_groups_refused_total', 'VMs refused a new group: reason max_groups (RESOURCE_EXHAUSTED) or rate (groupCreationRate, UNAVAILABLE)',
    () => Object.entries(groups.groupsRefused).map(([reason, count]) => [{ reason }, count] as const), ['reason']);
  scrapedCounter(registry, 'meshrelay_vms_ended_for_absent_names_total', 'VMs ended RESOURCE_EXHAUSTED for subscribing names the upstream does not have (maxAbsentNamesPerVm / PerGroup), or the most of them when the upstream refused their group\'s subscription',
    () => groups.absentNames.stats.vmsEnded);
  scrapedCounter(registry, 'meshrelay_group_moves_total', 'VMs told to reconnect because the config bound to their address moved them to another group', () => groups.moves);
  scrapedCounter(registry, 'meshrelay_group_verifications_total', 'Sampled VMs whose own config from istiod was compared with their group\'s, by result (matched, mismatched, inconclusive)', () => {
    const stats = groups.verifier?.stats;
    return stats ? (['matched', 'mismatched', 'inconclusive'] as const).map((result) => [{ result }, stats[result]] as const) : [];
  }, ['result']);
  const budget = parts.bufferBudget;
  new Gauge({
    name: 'meshrelay_buffered_bytes', help: 'Bytes held for streams: responses queued to streams that do not read (a frame shared by many counts once) and partly received messages',
    labelNames: ['kind'], registers: [registry],
    collect() {
      this.set({ kind: 'queued' }, budget.queuedBytes);
      this.set({ kind: 'receiving' }, budget.receivingBytes);
    },
  });
  new Gauge({
    name: 'meshrelay_buffer_budget_bytes', help: 'The buffer budget (maxBufferedMb)', registers: [registry],
    collect() { this.set(budget.maxBytes); },
  });
  scrapedCounter(registry, 'meshrelay_buffer_evictions_total', 'Streams ended RESOURCE_EXHAUSTED because the buffer budget was passed and they held the most', () => budget.evictions);
  scrapedCounter(registry, 'meshrelay_memory_reclaims_total', 'Full V8 collections asked for after the buffer budget released much (its Buffers are freed only then)', () => parts.reclaimer.collections);
  new Gauge({
    name: 'meshrelay_response_memo_bytes', help: 'Serialized responses kept for reuse across groups (bounded by responseMemoMb)', registers: [registry],
    collect() { this.set(groups.memoBytes()); },
  });
  const { connections, servers } = parts;
  new Gauge({
    name: 'meshrelay_downstream_connections', help: 'VM connections open (TCP, TLS handshakes included), against meshrelay_downstream_connection_limit', registers: [registry],
    collect() { this.set(connections.open); },
  });
  new Gauge({
    name: 'meshrelay_downstream_connection_limit', help: 'VM connections this pod takes before it refuses new ones (open-file limit less a reserve, or maxConnections; docs/CAPACITY.md)', registers: [registry],
    collect() { this.set(connections.limit); },
  });
  scrapedCounter(registry, 'meshrelay_downstream_connections_refused_total', 'VM connections closed as soon as accepted because the connection limit was reached', () => connections.refused);
  new Gauge({
    name: 'meshrelay_downstream_accepting', help: 'Processes accepting new VM connections (a worker holding its share of the pod\'s connections stops, and the others take them)', registers: [registry],
    collect() { this.set(servers.some((server) => server.accepting) || servers.every((server) => !server.listens) ? 1 : 0); },
  });
  const ads = parts.ads;
  new Gauge({
    name: 'meshrelay_xds_connected_proxies', help: 'Downstream ADS streams (VMs) connected', registers: [registry],
    collect() { this.set(ads.connectedProxies); },
  });
  const { snapshots, readiness } = parts;
  if (!snapshots) return;
  new Gauge({
    name: 'meshrelay_degraded', help: '1 while serving VMs from the cache snapshot with the upstream unreachable', registers: [registry],
    collect() { this.set(readiness().detail.degraded ? 1 : 0); },
  });
  new Gauge({
    name: 'meshrelay_cache_snapshot_writes', help: 'Cache snapshots written since start', registers: [registry],
    collect() { this.set(snapshots.writes); },
  });
  new Gauge({
    name: 'meshrelay_cache_snapshot_write_failures', help: 'Cache snapshot writes that failed (the previous snapshot was kept) since start', registers: [registry],
    collect() { this.set(snapshots.writeFailures); },
  });
}
