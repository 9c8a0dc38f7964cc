/**
 * The simulated istiod in its own process for the bench (so its CPU is not the load generator's
 * and a restart is a real one), driven by its parent over IPC: mesh changes, churn, restart on the
 * same port. Churn is driven by the parent, so the baseline can be churned identically.
 */
import { createLogger } from '../../src/log.js';
import type { MeshModel } from '../../src/sim/mesh-model.js';
import { applyMeshPatch, type MeshPatch } from './mesh-patch.js';
import { startSimIstiod, type RunningSim } from '../../src/sim/sim-server.js';

export type SimCommand =
  | { type: 'start'; patch: MeshPatch; port: number }
  | { type: 'mesh'; patch: MeshPatch }
  | { type: 'restart'; downMs: number };
export type SimMessage = { type: 'listening'; port: number } | { type: 'pushed'; version: string } | { type: 'restarted' };

const log = createLogger('error');
let running: RunningSim | undefined;
let mesh: MeshModel | undefined;

async function start(port: number): Promise<number> {
  running = await startSimIstiod(mesh!, { host: '127.0.0.1', port }, log);
  return running.address.port;
}

process.on('message', (command: SimCommand) => {
  void (async () => {
    switch (command.type) {
      case 'start':
        mesh = applyMeshPatch(undefined, command.patch);
        process.send?.({ type: 'listening', port: await start(command.port) } satisfies SimMessage);
        break;
      case 'mesh':
        mesh = applyMeshPatch(mesh, command.patch);
        running?.sim.updateMesh(mesh);
        process.send?.({ type: 'pushed', version: running?.sim.stats.lastVersion ?? '' } satisfies SimMessage);
        break;
      case 'restart': {
        const port = running!.address.port;
        mesh = running!.sim.meshModel;
        await running!.close();
        await new Promise((resolve) => setTimeout(resolve, command.downMs));
        await start(port);
        process.send?.({ type: 'restarted' } satisfies SimMessage);
        break;
      }
    }
  })();
});
