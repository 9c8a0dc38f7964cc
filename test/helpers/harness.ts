import { serveSchema, type ServeConfig } from '../../src/config/schema.js';
import { createLogger } from '../../src/log.js';
import { Relay } from '../../src/relay.js';
import { parseMesh, defaultMeshYaml, type MeshModel } from '../../src/sim/mesh-model.js';
import { startSimIstiod, type RunningSim } from '../../src/sim/sim-server.js';
import type { BackoffPolicy } from '../../src/transport/backoff.js';
import { formatAddress } from '../../src/transport/listen-address.js';

export const testLog = createLogger((process.env.TEST_LOG_LEVEL as 'silent' | undefined) ?? 'silent');
export const fastBackoff = { initialMs: 50, maxMs: 400, multiplier: 2, jitter: 0.2 };

export function defaultMesh(): MeshModel {
  return parseMesh(defaultMeshYaml, 'test');
}

export async function startSim(mesh: MeshModel = defaultMesh()): Promise<RunningSim & { target: string }> {
  const sim = await startSimIstiod(mesh, { host: '127.0.0.1', port: 0 }, testLog);
  return { ...sim, target: formatAddress(sim.address) };
}

/** A relay on loopback ports chosen by the OS, pointed at `upstream` (a sim by default). */
export async function startRelay(overrides: Partial<ServeConfig> = {}, backoff: BackoffPolicy = fastBackoff): Promise<Relay & { target: string; adminUrl: string }> {
  const config = serveSchema.parse({
    xdsListen: '127.0.0.1:0',
    adminListen: '127.0.0.1:0',
    groupLingerSeconds: 0.2,
    // The simulated istiod binds no config to VM addresses (docs/ADDRESS-BINDING.md).
    addressIndependentConfig: true,
    ...overrides,
  });
  const relay = await Relay.start({ config, log: testLog, backoff });
  return Object.assign(relay, {
    // The plaintext listener's address ('' when the config has none, as deploy/base).
    target: relay.addresses.xds ? formatAddress(relay.addresses.xds) : '',
    adminUrl: `http://${formatAddress(relay.addresses.admin!)}`,
  });
}

export async function eventually<T>(probe: () => T | Promise<T>, accept: (value: T) => boolean, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = await probe();
  while (!accept(last)) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms; last value: ${JSON.stringify(last)?.slice(0, 500)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
    last = await probe();
  }
  return last;
}
