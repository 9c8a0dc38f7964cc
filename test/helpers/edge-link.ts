import { existsSync } from 'node:fs';
import path from 'node:path';
import type { ServeConfig } from '../../src/config/schema.js';
import { Toxiproxy } from '../../bench/link/toxiproxy.js';
import { startRelay, startSim } from './harness.js';
import { peersDirectory } from './kube-apiserver.js';

export const toxiproxyBinary = path.join(peersDirectory, 'toxiproxy-server');

/** Why the edge link tests cannot run here, or undefined when they can. */
export function toxiproxyUnavailable(): string | undefined {
  return existsSync(toxiproxyBinary) ? undefined : 'toxiproxy-server not built (needs Go and its module proxy): run scripts/build-test-peers.sh';
}

export type TestRelay = Awaited<ReturnType<typeof startRelay>>;

export interface EdgeSite {
  sim: Awaited<ReturnType<typeof startSim>>;
  central: TestRelay;
  toxiproxy: Toxiproxy;
  /** The toxiproxy proxy between the edge relay and the central relay. */
  link: string;
  edge: TestRelay;
  /** Starts the edge relay again (after `edge.stop()`), with the same settings. */
  restartEdge(overrides?: Partial<ServeConfig>): Promise<TestRelay>;
  close(): Promise<void>;
}

/**
 * sim istiod ← central relay ← toxiproxy (the thin link) ← edge relay, all on loopback. The edge's
 * keepalives are short so a cut link is found dead in about two seconds.
 */
export async function startEdgeSite(edgeConfig: Partial<ServeConfig> = {}, centralConfig: Partial<ServeConfig> = {}): Promise<EdgeSite> {
  const sim = await startSim();
  const central = await startRelay({ upstream: sim.target, ...centralConfig });
  const toxiproxy = await Toxiproxy.start(toxiproxyBinary);
  const link = 'edge-link';
  const linkAddress = await toxiproxy.createProxy(link, central.addresses.tls ? `127.0.0.1:${central.addresses.tls.port}` : central.target);
  const edgeSettings: Partial<ServeConfig> = {
    upstream: linkAddress, upstreamKeepaliveSeconds: 1, upstreamKeepaliveTimeoutSeconds: 1, upstreamFirstResponseTimeoutSeconds: 3, ...edgeConfig,
  };
  const site: EdgeSite = {
    sim, central, toxiproxy, link,
    edge: await startRelay(edgeSettings),
    restartEdge: async (overrides = {}) => (site.edge = await startRelay({ ...edgeSettings, ...overrides })),
    close: async () => {
      await site.edge.stop();
      await toxiproxy.close();
      await central.stop();
      await sim.close();
    },
  };
  return site;
}

/** What the upstream streams of the groups whose key carries `app` as a label have received, in bytes (/debug/groups). */
export async function upstreamBytes(relay: TestRelay, app: string): Promise<number> {
  const groups = await (await fetch(`${relay.adminUrl}/debug/groups`)).json() as Array<{ fields: { LABELS?: { app?: string } }; upstream: { bytesReceived: number } }>;
  return groups.filter((group) => group.fields.LABELS?.app === app).reduce((sum, group) => sum + group.upstream.bytesReceived, 0);
}
