import type { ServeConfig } from '../../src/config/schema.js';
import { AdsTestClient, vmNode, type VmNodeOptions } from './ads-client.js';
import { startRelay } from './harness.js';
import { startStaticUpstream, type StaticUpstream } from './static-upstream.js';

export type Relay = Awaited<ReturnType<typeof startRelay>>;

export interface Rig {
  upstream: StaticUpstream;
  relay: Relay;
  sotw(node?: VmNodeOptions): AdsTestClient<'sotw'>;
  delta(node?: VmNodeOptions): AdsTestClient<'delta'>;
  close(): Promise<void>;
}

/** A relay in front of a hand-driven upstream, with client factories that clean up after themselves. */
export async function rig(overrides: Partial<ServeConfig> = {}): Promise<Rig> {
  const upstream = await startStaticUpstream();
  const relay = await startRelay({ upstream: upstream.target, ...overrides });
  const clients: Array<{ close(): void }> = [];
  const track = <C extends { close(): void }>(client: C) => { clients.push(client); return client; };
  return {
    upstream,
    relay,
    sotw: () => track(new AdsTestClient(relay.target, 'sotw')),
    delta: () => track(new AdsTestClient(relay.target, 'delta')),
    close: async () => {
      for (const client of clients) client.close();
      await relay.stop();
      await upstream.close();
    },
  };
}

export { vmNode };

export function names(response: { resources: Array<{ name?: string }> }): string[] {
  return response.resources.map((resource) => resource.name ?? '');
}
