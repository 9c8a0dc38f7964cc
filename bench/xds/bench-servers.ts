import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MeshModel } from '../../src/sim/mesh-model.js';
import { Toxiproxy } from '../link/toxiproxy.js';
import { startRelayProcess, type RelayProcess } from '../relay-process.js';
import { pinToCpus } from '../process-stats.js';
import { notBefore, stampOf, type PushStamp } from './envoy-client.js';
import { openFileLimit, RESERVED_FILES } from '../../src/limits/open-files.js';
import type { BaselineCommand, BaselineMessage } from './raw-baseline.js';
import type { SimCommand, SimMessage } from './sim-process.js';
import { MeshPatcher } from './mesh-patch.js';
import type { TargetKind, XdsBenchOptions } from './xds-bench-types.js';

const here = path.dirname(fileURLToPath(import.meta.url));

/** Where the clients connect, and what can be read of it. */
export interface Endpoint {
  target: string;
  /** A target served by several processes, each on its own port: client i connects to shards[i % n]. */
  shards?: string[];
  /** Its process, or processes, whose CPU and memory (with their descendants') are the target's. */
  pid?: number | number[] | undefined;
  adminUrl?: string | undefined;
}

/** A server the bench drives: the simulated istiod or the baseline. */
export interface Server extends Endpoint {
  /** Applies a mesh; resolves with the push stamp its clients will see. */
  apply(mesh: MeshModel): Promise<PushStamp>;
  restart?(downMs: number): Promise<void>;
  close(): Promise<void>;
}

/** The processes one target's run talks to. */
export interface Topology {
  /** What the clients connect to. */
  target: Endpoint;
  /** Servers a mesh change is applied to; the last one's push number is what clients see. */
  driven: Server[];
  /** The upstream (simulated or real istiod): restarted by that scenario (if it can be), and the correctness reference. */
  upstream: (Endpoint & Pick<Server, 'restart'>) | undefined;
  /** With --link: the toxiproxy between the VMs' side and the upstream, and its proxy's name. */
  link?: { toxiproxy: Toxiproxy; proxy: string };
}

const LINK_PROXY = 'edge-link';

/** The first message from a child that `accept` takes; rejects if the child exits first. */
export function once<T>(child: ChildProcess, accept: (message: T) => boolean): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: T) => {
      if (!accept(message)) return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(message);
    };
    const onExit = (code: number | null) => reject(new Error(`${path.basename(String(child.spawnfile))} child exited (${code})`));
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

function parseStamp(version: string): PushStamp {
  const stamp = stampOf(version);
  if (!stamp) throw new Error(`the upstream's version "${version}" carries no push stamp`);
  return stamp;
}

export async function startSim(mesh: MeshModel): Promise<Server & { port: number }> {
  const child = fork(path.join(here, 'sim-process.js'), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const patcher = new MeshPatcher();
  child.send({ type: 'start', patch: patcher.patch(mesh), port: 0 } satisfies SimCommand);
  const { port } = await once<SimMessage>(child, (m) => m.type === 'listening') as { port: number };
  return {
    port,
    target: `127.0.0.1:${port}`,
    pid: child.pid,
    adminUrl: undefined,
    apply: async (next) => {
      child.send({ type: 'mesh', patch: patcher.patch(next) } satisfies SimCommand);
      return parseStamp((await once<SimMessage>(child, (m) => m.type === 'pushed') as { version: string }).version);
    },
    restart: async (downMs) => {
      child.send({ type: 'restart', downMs } satisfies SimCommand);
      await once<SimMessage>(child, (m) => m.type === 'restarted');
    },
    close: async () => {
      child.kill();
    },
  };
}

/**
 * The raw baseline in as many processes as its open-file limit needs for the clients, each on its
 * own port with the whole mesh (a plain HTTP/2 server has no way to share one socket evenly).
 */
async function startBaseline(mesh: MeshModel, clients: number): Promise<Server> {
  const count = Math.max(1, Math.ceil(clients / (openFileLimit() - RESERVED_FILES)));
  const shards = await Promise.all(Array.from({ length: count }, async () => {
    const child = fork(path.join(here, 'raw-baseline.js'), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const { port } = await once<BaselineMessage>(child, (m) => m.type === 'listening') as { port: number };
    return { child, port };
  }));
  const patcher = new MeshPatcher();
  const apply = async (next: MeshModel) => {
    const patch = patcher.patch(next);
    const pushed = shards.map(({ child }) => {
      const reply = once<BaselineMessage>(child, (m) => m.type === 'pushed');
      child.send({ type: 'mesh', patch, network: 'vm-net' } satisfies BaselineCommand);
      return reply;
    });
    // Each shard stamps its own push: the clients must reach the earliest of them (each shard's
    // clients then hold that shard's stamp, which is no earlier; the previous push was before all).
    const stamps = (await Promise.all(pushed)).map((message) => parseStamp((message as { version: string }).version));
    return stamps.reduce((earliest, stamp) => (notBefore(stamp, earliest) ? earliest : stamp));
  };
  await apply(mesh);
  const targets = shards.map(({ port }) => `127.0.0.1:${port}`);
  return {
    target: targets[0]!, ...(count > 1 ? { shards: targets } : {}), pid: shards.map(({ child }) => child.pid!), adminUrl: undefined, apply,
    close: async () => { for (const { child } of shards) child.kill(); },
  };
}

async function startRelay(kind: 'group' | 'stream' | 'group-workers' | 'stream-workers', upstream: Endpoint, options: XdsBenchOptions): Promise<RelayProcess> {
  const mode = kind.startsWith('group') ? 'group' : 'stream';
  // group and stream: the relay as a pod runs it, a worker per core and more if the open-file limit
  // needs them for the clients (with room for a reconnect's old and new connection side by side);
  // the *-workers targets: as many workers as asked for.
  const workers = kind.endsWith('-workers') ? ['--workers', String(options.relayWorkers)] : [];
  const maxConnections = Math.ceil(options.clients * 1.05) + 100;
  // Behind a thin link the relay is an edge relay: one upstream connection (toxiproxy shapes each
  // connection on its own, so two would double the link), keepalives that find a cut link dead
  // within 15 s, and reconnects tried at least every 5 s so a healed link is used soon (docs/EDGE.md).
  const edge = options.link ? ['--upstream-connections', '1', '--upstream-keepalive-seconds', '10', '--upstream-keepalive-timeout-seconds', '5', '--reconnect-backoff-max-seconds', '5'] : [];
  // The simulated istiod binds no config to VM addresses; a real one may: the relay then reads what
  // it binds from the API server istiod reads, or keys each address apart (docs/ADDRESS-BINDING.md).
  const addressBinding = !options.upstream ? ['--address-independent-config', 'true']
    : options.upstream.kubeconfig ? ['--address-config-source', 'kubernetes', '--kubeconfig', options.upstream.kubeconfig] : [];
  return startRelayProcess([
    '--upstream', upstream.target, '--mode', mode, ...workers, '--max-connections', String(maxConnections), ...(options.relayWorkerBalance ? ['--worker-balance', options.relayWorkerBalance] : []), '--admin-listen', '127.0.0.1:0', '--ca-mode', 'off',
    '--state-dir', mkdtempSync(path.join(tmpdir(), 'meshrelay-bench-xds-')), ...addressBinding,
    ...(options.verifyGroupFraction > 0 ? ['--verify-group-fraction', String(options.verifyGroupFraction)] : []), ...edge,
  ], { ...(options.relayCpuProfileDir ? { cpuProfileDir: options.relayCpuProfileDir } : {}), ...(options.relayCpus ? { cpus: options.relayCpus } : {}) });
}

function relayEndpoint(relay: RelayProcess): Endpoint {
  return { target: relay.address, pid: relay.pid, adminUrl: relay.adminUrl };
}

/**
 * Starts what a target needs: a fresh simulated istiod (unless the upstream is given), the relay or
 * the baseline in front of it. Each started process's stop is added to `closers`.
 */
export async function startTopology(kind: TargetKind, mesh: MeshModel, options: XdsBenchOptions, closers: Array<() => Promise<void>>): Promise<Topology> {
  if (kind === 'external') return { target: options.external!, driven: [], upstream: undefined };
  if (options.upstream) {
    if (kind === 'baseline') throw new Error('the baseline serves the simulated mesh: it cannot stand in for an upstream the bench does not start');
    if (kind === 'direct') return { target: options.upstream, driven: [], upstream: options.upstream };
    const relay = await startRelay(kind, options.upstream, options);
    closers.push(() => relay.stop());
    return { target: relayEndpoint(relay), driven: [], upstream: options.upstream };
  }
  const sim = await startSim(mesh);
  closers.push(() => sim.close());
  // Behind a relay the simulator stands for istiod on other machines: it runs beside the VMs.
  pinToCpus(sim.pid, kind === 'direct' ? options.relayCpus : options.clientCpus);
  const link = options.link ? await startLink(sim, options.link, closers) : undefined;
  // What is on the far side of the link from the upstream (the VMs, or the relay in front of them) reaches it through the link.
  const acrossLink: Endpoint = link ? { ...sim, target: link.address } : sim;
  if (kind === 'direct') return { target: acrossLink, driven: [sim], upstream: sim, ...(link ? { link: link.handle } : {}) };
  if (kind === 'baseline') {
    if (link) throw new Error('the baseline has no upstream behind it: a link between it and the upstream means nothing');
    const baseline = await startBaseline(mesh, options.clients);
    closers.push(() => baseline.close());
    pinToCpus(baseline.pid, options.relayCpus);
    return { target: baseline, driven: [sim, baseline], upstream: sim };
  }
  const relay = await startRelay(kind, acrossLink, options);
  closers.push(() => relay.stop());
  return { target: relayEndpoint(relay), driven: [sim], upstream: sim, ...(link ? { link: link.handle } : {}) };
}

async function startLink(upstream: Endpoint, link: NonNullable<XdsBenchOptions['link']>, closers: Array<() => Promise<void>>) {
  const toxiproxy = await Toxiproxy.start(link.toxiproxy);
  closers.push(() => toxiproxy.close());
  const address = await toxiproxy.createProxy(LINK_PROXY, upstream.target);
  await toxiproxy.shapeLink(LINK_PROXY, link.shape);
  return { address, handle: { toxiproxy, proxy: LINK_PROXY } };
}
