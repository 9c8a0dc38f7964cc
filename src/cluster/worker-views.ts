import type { AdminServer } from '../admin/admin-server.js';
import type { RelayAdminView } from '../admin/admin-view.js';
import { statusData } from '../admin/status-page.js';
import type { DebugAnswer } from '../xds/downstream/ads-session.js';
import type { WorkerLink } from './worker-link.js';

/** How long a view waits for another worker before answering without it. */
const PEER_TIMEOUT_MS = 2000;

/**
 * A worker's internal admin routes, read by the coordinator (cluster/coordinator-admin.ts) and by
 * the other workers: its status page data, its readiness, its metrics as prom-client JSON (to be summed), and its
 * VMs as istiod's syncz entries.
 */
export function registerWorkerRoutes(admin: AdminServer, relay: RelayAdminView): void {
  admin.route('/internal/status', () => ({ status: 200, body: statusData(relay) }));
  // Kubelet probes /readyz every few seconds: readiness alone, not every VM's sync state.
  admin.route('/internal/readiness', () => ({ status: 200, body: relay.readiness() }));
  admin.route('/internal/metrics', async () => ({ status: 200, body: await relay.metrics.getMetricsAsJSON() }));
  admin.route('/internal/syncz', (url) => {
    const namespace = url.searchParams.get('namespace') ?? undefined;
    return { status: 200, body: relay.ads.syncz(namespace).map((entry) => ({ ...entry, body: entry.body.toString('base64') })) };
  });
}

export async function fetchJson<T>(url: string): Promise<T> {
  const response = await fetch(url, { signal: AbortSignal.timeout(PEER_TIMEOUT_MS) });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return await response.json() as T;
}

/**
 * The other workers' VMs for istioctl proxy-status, so an istioctl stream that lands on any worker
 * lists every VM of the relay. A worker that does not answer within 2 s is left out of the answer.
 */
export async function otherWorkersSyncz(link: WorkerLink, namespace: string | undefined): Promise<DebugAnswer['resources']> {
  const query = namespace === undefined ? '' : `?namespace=${encodeURIComponent(namespace)}`;
  const answers = await Promise.allSettled(link.otherWorkers().map((admin) => fetchJson<Array<{ name: string; typeUrl: string; body: string }>>(`${admin}/internal/syncz${query}`)));
  return answers.flatMap((answer) => (answer.status === 'fulfilled' ? answer.value.map((entry) => ({ ...entry, body: Buffer.from(entry.body, 'base64') })) : []));
}
