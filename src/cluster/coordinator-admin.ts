import { AggregatorRegistry, Gauge, Registry } from 'prom-client';
import type { AdminServer } from '../admin/admin-server.js';
import { processMetrics } from '../admin/process-metrics.js';
import { renderStatusPage, type StatusData } from '../admin/status-page.js';
import { LOG_LEVELS, setLogLevel, type Logger } from '../log.js';
import type { ConnectionCapacity } from '../limits/connection-capacity.js';
import { scrapedCounter } from '../admin/scraped-counter.js';
import { fetchJson } from './worker-views.js';

interface WorkerAnswer<T> { index: number; body: T }

/** What these routes read of the coordinator (cluster/coordinator.ts). */
export interface CoordinatorView {
  readonly workers: ReadonlyArray<{ index: number; state: string; admin: string | undefined; restarts: number; process: { process: { pid?: number | undefined } } | undefined }>;
  readonly addresses: { upstream: string };
  readonly stopping: boolean;
  readonly log: Logger;
  readonly capacity: ConnectionCapacity;
  readonly refusals: { count: number };
  connections(): number[];
}
type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

type Readiness = Pick<StatusData, 'ready' | 'detail'>;

/** GETs `path` from every ready worker's internal admin port (or the first, `one`); workers that fail are left out. */
async function fromWorkers<T>(coordinator: CoordinatorView, path: string, one = false): Promise<Array<WorkerAnswer<T>>> {
  const ready = coordinator.workers.filter((worker) => worker.state === 'ready' && worker.admin).slice(0, one ? 1 : undefined);
  const answers = await Promise.allSettled(ready.map(async (worker) => ({ index: worker.index, body: await fetchJson<T>(`${worker.admin}${path}`) })));
  return answers.flatMap((answer) => (answer.status === 'fulfilled' ? [answer.value] : []));
}

interface WorkerConnections { open: number; limit: number; refused: number; full: boolean }

/**
 * The pod's readiness: not stopping, some worker serving, every serving worker ready (a worker
 * holding its share of the connections is, while another has room), and not every worker full.
 */
function mergeReadiness(coordinator: CoordinatorView, statuses: Array<WorkerAnswer<Readiness>>): Readiness {
  const details = statuses.map((status) => status.body.detail);
  const snapshots = details.map((detail) => detail.snapshot as { loadedFrom: string | null; writes: number; lastWriteError: string } | undefined).filter((s) => s !== undefined);
  const connections = details.map((detail) => detail.connections as WorkerConnections | undefined).filter((c) => c !== undefined);
  const full = statuses.length > 0 && connections.length === statuses.length && connections.every((c) => c.full);
  const ready = !coordinator.stopping && !full && statuses.length > 0 && statuses.every((status) => status.body.ready || (status.body.detail.connections as WorkerConnections | undefined)?.full === true);
  return {
    ready,
    detail: {
      stopping: coordinator.stopping,
      connections: {
        open: connections.reduce((sum, c) => sum + c.open, 0), limit: coordinator.capacity.pod, perWorker: coordinator.capacity.perProcess,
        refused: connections.reduce((sum, c) => sum + c.refused, 0) + coordinator.refusals.count, full, capacity: coordinator.capacity.reason, acceptQueue: coordinator.capacity.acceptQueue.note,
      },
      upstream: coordinator.addresses.upstream,
      upstreamConnected: details.length > 0 && details.every((detail) => detail.upstreamConnected === true),
      configReceived: details.some((detail) => detail.configReceived === true),
      degraded: details.some((detail) => detail.degraded === true),
      ...(snapshots.length > 0 ? {
        snapshot: {
          loadedFrom: snapshots.map((s) => s.loadedFrom).filter((at) => at !== null).sort().at(-1) ?? null,
          writes: snapshots.reduce((sum, s) => sum + s.writes, 0),
          lastWriteError: snapshots.map((s) => s.lastWriteError).find((error) => error !== '') ?? '',
        },
      } : {}),
      workers: coordinator.workers.map((worker) => ({
        index: worker.index, pid: worker.process?.process.pid, state: worker.state, restarts: worker.restarts,
        ready: statuses.find((status) => status.index === worker.index)?.body.ready ?? false,
      })),
    },
  };
}

async function mergedStatus(coordinator: CoordinatorView): Promise<StatusData> {
  const statuses = await fromWorkers<StatusData>(coordinator, '/internal/status');
  const { ready, detail } = mergeReadiness(coordinator, statuses);
  const first = statuses[0]?.body;
  // Every worker watches the same topology; the first one's is the relay's.
  const cas = statuses.map((status) => status.body.ca).filter((ca) => ca !== undefined);
  const connections = coordinator.connections();
  return {
    ready, detail, upstream: coordinator.addresses.upstream,
    upstreamStreams: statuses.reduce((sum, status) => sum + status.body.upstreamStreams, 0),
    groups: statuses.flatMap((status) => status.body.groups.map((group) => ({ ...group, worker: status.index }))),
    vms: statuses.flatMap((status) => status.body.vms.map((vm) => ({ ...vm, worker: status.index }))),
    networks: first?.networks ?? {},
    ...(cas[0] ? { ca: { ...cas[0], csrs: cas.reduce((sum, ca) => sum + ca.csrs, 0), issued: cas.reduce((sum, ca) => sum + ca.issued, 0) } } : {}),
    workers: coordinator.workers.map((worker) => ({ index: worker.index, pid: worker.process?.process.pid, state: worker.state, connections: connections?.[worker.index] })),
  };
}

/** The coordinator's own series: workers by state, restarts. */
function coordinatorMetrics(coordinator: CoordinatorView): Registry {
  const registry = new Registry();
  new Gauge({
    name: 'meshrelay_workers', help: 'Worker processes by state (starting, ready, stopping, exited).', labelNames: ['state'], registers: [registry],
    collect() {
      this.reset();
      for (const worker of coordinator.workers) this.inc({ state: worker.state });
    },
  });
  new Gauge({
    name: 'meshrelay_worker_restarts', help: 'Times a worker process exited unexpectedly and was started again.', registers: [registry],
    collect() { this.set(coordinator.workers.reduce((sum, worker) => sum + worker.restarts, 0)); },
  });
  // Summed with the workers' own refusals (their connection gates) under the same name.
  scrapedCounter(registry, 'meshrelay_downstream_connections_refused_total', 'VM connections closed as soon as accepted because the connection limit was reached', () => coordinator.refusals.count);
  return registry;
}

/**
 * The admin port of a relay with workers: the same pages as a single process, each over every
 * worker. Lists are joined with the worker's index on each entry, counters and gauges are summed
 * (prom-client's AggregatorRegistry, as its cluster mode does), process_* summed over the pod.
 */
export function registerCoordinatorRoutes(admin: AdminServer, coordinator: CoordinatorView): void {
  const own = Registry.merge([processMetrics(), coordinatorMetrics(coordinator)]);
  admin.route('/', async () => ({ status: 200, body: renderStatusPage(await mergedStatus(coordinator)), contentType: 'text/html; charset=utf-8' }));
  admin.route('/healthz', () => ({ status: 200, body: { status: 'ok', pid: process.pid, workers: coordinator.workers.map((worker) => ({ index: worker.index, state: worker.state })) } }));
  admin.route('/readyz', async () => {
    const { ready, detail } = mergeReadiness(coordinator, await fromWorkers<Readiness>(coordinator, '/internal/readiness'));
    return { status: ready ? 200 : 503, body: { ready, ...detail } };
  });
  admin.route('/metrics', async () => {
    const workers = await fromWorkers<MetricsJson>(coordinator, '/internal/metrics');
    const merged = AggregatorRegistry.aggregate([await own.getMetricsAsJSON(), ...workers.map((worker) => worker.body)]);
    return { status: 200, body: await merged.metrics(), contentType: merged.contentType };
  });
  const joined = (path: string) => async (url: URL) => {
    const answers = await fromWorkers<Array<Record<string, unknown>>>(coordinator, `${path}${url.search}`);
    return { status: 200, body: answers.flatMap((answer) => answer.body.map((entry) => ({ ...entry, worker: answer.index }))) };
  };
  admin.route('/debug/syncz', joined('/debug/syncz'));
  admin.route('/debug/groups', joined('/debug/groups'));
  admin.route('/debug/networks', async () => ({ status: 200, body: (await fromWorkers(coordinator, '/debug/networks', true))[0]?.body ?? {} }));
  admin.route('/debug/config_dump', async (url) => {
    const proxy = url.searchParams.get('proxy');
    if (!proxy) return { status: 400, body: { error: 'name the proxy: /debug/config_dump?proxy=<node id>' } };
    const found = (await fromWorkers<unknown[]>(coordinator, `/debug/config_dump${url.search}`))[0];
    return found ? { status: 200, body: found.body } : { status: 404, body: { error: `no connected proxy ${proxy}` } };
  });
  admin.route('/logging', () => ({ status: 200, body: { level: coordinator.log.level } }));
  admin.putRoute('/logging', async (url) => {
    const level = url.searchParams.get('level') ?? '';
    if (!LOG_LEVELS.includes(level as never)) return { status: 400, body: { error: `level must be one of ${LOG_LEVELS.join(', ')}` } };
    setLogLevel(coordinator.log, level as (typeof LOG_LEVELS)[number]);
    await Promise.allSettled(coordinator.workers.filter((worker) => worker.admin).map((worker) => fetch(`${worker.admin}/logging?level=${level}`, { method: 'PUT' })));
    coordinator.log.info({ level }, 'log level changed on every worker');
    return { status: 200, body: { level } };
  });
}
