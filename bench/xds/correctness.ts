import type { vmNode } from '../../src/sim/vm-node.js';
import type { XdsProtocol } from '../../src/xds/protocol/envelopes.js';
import { EnvoyClient, type ResourceDecoder } from './envoy-client.js';
import { clientNode, isBound } from './fleet.js';
import type { Endpoint } from './bench-servers.js';
import type { TargetResult, XdsBenchOptions } from './xds-bench-types.js';

/**
 * Every client's config hash against a reference client of its class connected straight to the
 * upstream; with no upstream to ask (an external target), against the most common hash in the class.
 */
export async function checkCorrectness(
  hashes: Array<{ index: number; hash: string }>, options: Pick<XdsBenchOptions, 'groups' | 'protocol' | 'timeoutSeconds' | 'clients' | 'boundEvery'>, upstream: Pick<Endpoint, 'target'> | undefined, decoder: ResourceDecoder,
): Promise<TargetResult['correctness']> {
  const { groups, protocol, timeoutSeconds, clients, boundEvery } = options;
  // VMs configured alike: one group's, apart for the address-bound ones (--bound-every).
  const classOf = (index: number) => `${index % groups}${isBound(index, boundEvery) ? '/bound' : ''}`;
  const expected = new Map<string, string>();
  for (let index = 0; index < clients; index++) {
    const kind = classOf(index);
    if (expected.has(kind)) continue;
    if (upstream) expected.set(kind, await referenceHash(upstream.target, protocol, clientNode(index, groups), decoder, timeoutSeconds));
    else expected.set(kind, mostCommon(hashes.filter((h) => classOf(h.index) === kind).map((h) => h.hash)));
  }
  const matching = hashes.filter(({ index, hash }) => expected.get(classOf(index)) === hash).length;
  return { checked: hashes.length, matching, expectedHashes: new Set(expected.values()).size };
}

function mostCommon(values: string[]): string {
  const counts = new Map<string, number>();
  for (const value of values) counts.set(value, (counts.get(value) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1])[0]?.[0] ?? '';
}

async function referenceHash(target: string, protocol: XdsProtocol, node: ReturnType<typeof vmNode>, decoder: ResourceDecoder, timeoutSeconds: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { client.close(); reject(new Error(`reference client got no full config from ${target}`)); }, timeoutSeconds * 1000);
    const client = new EnvoyClient(-1, target, protocol, node, false, decoder, {
      configured: () => {
        // Give trailing EDS/RDS a moment, as the fleet had.
        setTimeout(() => {
          clearTimeout(timer);
          resolve(client.configHash());
          client.close();
        }, 300);
      },
      update: () => {},
      error: () => {},
    });
    client.connect();
  });
}
