import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { clusterName } from '../../src/mesh/istio-tls.js';
import { renderMesh } from '../../src/sim/config-generators.js';
import { serviceHost, type MeshModel, type MeshService } from '../../src/sim/mesh-model.js';
import { vmNode } from '../../src/sim/vm-node.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { cpuSeconds, rssBytes, RssSampler } from '../process-stats.js';
import { startRelayProcess, type RelayProcess } from '../relay-process.js';
import { summarize, type LatencySummary } from '../stats.js';
import { EnvoyClient, ResourceDecoder, stampOf, type PushStamp } from './envoy-client.js';
import { profileMesh, type ProfileName } from './profiles.js';
import type { BaselineCommand, BaselineMessage } from './raw-baseline.js';
import type { SimCommand, SimMessage } from './sim-process.js';
import type { WorkerCommand, WorkerProgress, WorkerSamples } from './worker.js';
import type { XdsProtocol } from '../../src/xds/protocol/envelopes.js';
import type { BENCH_SCENARIOS } from '../../src/config/schema.js';

const here = path.dirname(fileURLToPath(import.meta.url));

export type TargetKind = 'direct' | 'group' | 'stream' | 'baseline' | 'external';
export type Scenario = (typeof BENCH_SCENARIOS)[number];

export interface XdsBenchOptions {
  clients: number;
  groups: number;
  protocol: XdsProtocol;
  workers: number;
  profile: ProfileName;
  nackFraction: number;
  targets: TargetKind[];
  /** For `external`: the address to test, and optionally its pid (CPU, memory) and admin URL (upstream counters). */
  external?: { target: string; pid?: number; adminUrl?: string };
  /**
   * An upstream the bench does not start (a real istiod): `direct` connects the VMs to it, `group`
   * and `stream` put a relay in front of it. Its config cannot be changed from here, so only the
   * connect storm runs; `pid` (on this host) gives its CPU and memory; `kubeconfig`, the API server
   * istiod reads, lets the relay key VMs by the config bound to their addresses.
   */
  upstream?: { target: string; pid?: number; kubeconfig?: string };
  connectRate: number;
  scenarios: Scenario[];
  /** Every K-th VM is address-bound upstream (0: none): correctness compares each class with its own reference. */
  boundEvery: number;
  /** The relay's verifyGroupFraction (group mode): the share of joining VMs it checks against istiod. */
  verifyGroupFraction: number;
  /** Size of the `bulk` scenario's EDS update, in KiB (as rendered for the VMs' network). */
  bulkKib: number;
  churnRate: number;
  churnSeconds: number;
  timeoutSeconds: number;
  relayCpuProfileDir: string;
  onProgress?: (line: string) => void;
}

export interface PhaseResult {
  /** Wall time until every client had the change (or full config, for connect). */
  totalMs: number | undefined;
  complete: number;
  receive?: LatencySummary;
  ack?: LatencySummary;
  timeToConfig?: LatencySummary;
  serverCpuSeconds: number | undefined;
  serverPeakRssBytes: number | undefined;
  /** The same for the upstream (simulated or real istiod), when its pid is known. */
  upstreamCpuSeconds: number | undefined;
  upstreamPeakRssBytes: number | undefined;
  bytesReceived: number;
  errors: number;
  reconnects: number;
  /** The size of the update the phase pushed (bulk), in bytes of resources. */
  updateBytes?: number;
}

export interface TargetResult {
  target: TargetKind;
  phases: Partial<Record<Scenario, PhaseResult>>;
  /** Samples for the report's CDF plots. */
  samples: { timeToConfigMs: number[]; edsReceiveMs: number[] };
  server: { idleRssBytes?: number; startRssBytes?: number; idleRssPerVmKiB?: number; upstreamIdleRssBytes?: number };
  upstream?: { streams: number; notStreaming: number; bytesReceived: number };
  downstreamBytes: number;
  nacksSent: number;
  correctness: { checked: number; matching: number; expectedHashes: number };
  errorMessages: string[];
}

interface Worker {
  child: ChildProcess;
  progress: WorkerProgress;
}

/** Where the clients connect, and what can be read of it. */
interface Endpoint {
  target: string;
  pid?: number | undefined;
  adminUrl?: string | undefined;
}

/** A server the bench drives: the simulated istiod or the baseline. */
interface Server extends Endpoint {
  /** Applies a mesh; resolves with the push stamp its clients will see. */
  apply(mesh: MeshModel): Promise<PushStamp>;
  restart?(downMs: number): Promise<void>;
  close(): Promise<void>;
}

interface Topology {
  /** What the clients connect to. */
  target: Endpoint;
  /** Servers a mesh change is applied to; the last one's push number is what clients see. */
  driven: Server[];
  /** The upstream (simulated or real istiod): restarted by that scenario (if it can be), and the correctness reference. */
  upstream: (Endpoint & Pick<Server, 'restart'>) | undefined;
}

function parseStamp(version: string): PushStamp {
  const stamp = stampOf(version);
  if (!stamp) throw new Error(`the upstream's version "${version}" carries no push stamp`);
  return stamp;
}

function once<T>(child: ChildProcess, accept: (message: T) => boolean): Promise<T> {
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

export async function startSim(mesh: MeshModel): Promise<Server & { port: number }> {
  const child = fork(path.join(here, 'sim-process.js'), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  child.send({ type: 'start', mesh, port: 0 } satisfies SimCommand);
  const { port } = await once<SimMessage>(child, (m) => m.type === 'listening') as { port: number };
  return {
    port,
    target: `127.0.0.1:${port}`,
    pid: child.pid,
    adminUrl: undefined,
    apply: async (next) => {
      child.send({ type: 'mesh', mesh: next } satisfies SimCommand);
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

async function startBaseline(mesh: MeshModel): Promise<Server> {
  const child = fork(path.join(here, 'raw-baseline.js'), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const { port } = await once<BaselineMessage>(child, (m) => m.type === 'listening') as { port: number };
  const apply = async (next: MeshModel) => {
    child.send({ type: 'mesh', mesh: next, network: 'vm-net' } satisfies BaselineCommand);
    return parseStamp((await once<BaselineMessage>(child, (m) => m.type === 'pushed') as { version: string }).version);
  };
  await apply(mesh);
  return { target: `127.0.0.1:${port}`, pid: child.pid, adminUrl: undefined, apply, close: async () => { child.kill(); } };
}

async function startRelay(kind: 'group' | 'stream', upstream: Endpoint, options: XdsBenchOptions): Promise<RelayProcess> {
  // The simulated istiod binds no config to VM addresses; a real one may: the relay then reads what
  // it binds from the API server istiod reads, or keys each address apart (docs/ADDRESS-BINDING.md).
  const addressBinding = !options.upstream ? ['--address-independent-config', 'true']
    : options.upstream.kubeconfig ? ['--address-config-source', 'kubernetes', '--kubeconfig', options.upstream.kubeconfig] : [];
  return startRelayProcess([
    '--upstream', upstream.target, '--mode', kind, '--admin-listen', '127.0.0.1:0', '--ca-mode', 'off',
    '--state-dir', mkdtempSync(path.join(tmpdir(), 'meshrelay-bench-xds-')), ...addressBinding,
    ...(options.verifyGroupFraction > 0 ? ['--verify-group-fraction', String(options.verifyGroupFraction)] : []),
  ], options.relayCpuProfileDir ? { cpuProfileDir: options.relayCpuProfileDir } : {});
}

/** With --bound-every K, VMs K-1, 2K-1, … are the ones config is bound to by address (scripts/bench-real-istiod.sh binds them). */
function isBound(index: number, boundEvery: number): boolean {
  return boundEvery > 0 && index % boundEvery === boundEvery - 1;
}

/** The VM of index i: G groups that differ in their app label (so in their aggregation key). */
function clientNode(index: number, groups: number) {
  const group = index % groups;
  const ip = `172.16.${(index >> 8) & 255}.${index & 255}`;
  return vmNode({ name: `vm-${index}`, ip, namespace: 'vm', serviceAccount: `vm-app-${group}`, labels: { app: `vm-app-${group}`, version: 'v1' } });
}

/** The service with its first endpoint's weight changed. */
function bumpFirstEndpoint(service: MeshService): MeshService {
  return { ...service, endpoints: service.endpoints.map((e, i) => (i === 0 ? { ...e, weight: e.weight >= 100 ? 1 : e.weight + 1 } : e)) };
}

/** One endpoint's weight changed: the smallest EDS update (≈1 KiB). */
export function changeOneEndpoint(mesh: MeshModel, step: number): MeshModel {
  const service = mesh.services[step % mesh.services.length]!;
  return { ...mesh, services: mesh.services.map((s) => (s === service ? bumpFirstEndpoint(s) : s)) };
}

/** One endpoint changed in as many services as make `kib` KiB of EDS for the VMs (or all of them). */
function bulkChange(mesh: MeshModel, kib: number): { mesh: MeshModel; bytes: number } {
  const sizes = new Map((renderMesh(mesh, { network: 'vm-net', generator: 'envoy' }).get(TypeUrl.endpoint) ?? []).map((r) => [r.name, r.body.length]));
  const chosen = new Set<MeshService>();
  let bytes = 0;
  for (const service of mesh.services) {
    if (bytes >= kib * 1024) break;
    chosen.add(service);
    for (const { port } of service.ports) bytes += sizes.get(clusterName(port, serviceHost(service, mesh.domain))) ?? 0;
  }
  return { mesh: { ...mesh, services: mesh.services.map((s) => (chosen.has(s) ? bumpFirstEndpoint(s) : s)) }, bytes };
}

/** A new service: a CDS push (and its EDS, RDS) to every VM. */
function addService(mesh: MeshModel, step: number): MeshModel {
  const template = mesh.services[0]!;
  return { ...mesh, services: [...mesh.services, { ...template, name: `added-${step}`, vip: `10.97.${(step >> 8) & 255}.${step & 255}` }] };
}

class Run {
  private readonly workers: Worker[] = [];
  private mesh: MeshModel;
  private step = 0;
  private readonly errorMessages: string[] = [];
  /** Each phase's raw latency samples, for the report's CDF plots. */
  private readonly rawSamples = new Map<Scenario, { receive: number[]; configured: number[] }>();
  private watchId = 0;

  constructor(private readonly options: XdsBenchOptions, private readonly kind: TargetKind, private readonly servers: Topology) {
    this.mesh = profileMesh(options.profile);
  }

  private get serverPid(): number | undefined {
    return this.servers.target.pid;
  }

  async startWorkers(): Promise<void> {
    const { clients, groups, workers, protocol, nackFraction } = this.options;
    const nackEvery = nackFraction > 0 ? Math.max(1, Math.round(1 / nackFraction)) : 0;
    for (let w = 0; w < workers; w++) {
      const child = fork(path.join(here, 'worker.js'), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      const worker: Worker = { child, progress: { type: 'progress', connected: 0, configured: 0, responses: 0, bytes: 0, errors: 0, nacks: 0, reconnects: 0, watched: 0, watchId: 0 } };
      child.on('message', (message: WorkerProgress | WorkerSamples) => { if (message.type === 'progress') worker.progress = message; });
      const specs = [];
      for (let i = w; i < clients; i += workers) specs.push({ index: i, node: clientNode(i, groups), nack: nackEvery > 0 && i % nackEvery === nackEvery - 1 });
      child.send({ type: 'init', target: this.servers.target.target, protocol, clients: specs } satisfies WorkerCommand);
      this.workers.push(worker);
    }
  }

  private total(field: keyof Omit<WorkerProgress, 'type' | 'watchId'>): number {
    if (field === 'watched') return this.workers.reduce((sum, worker) => sum + (worker.progress.watchId === this.watchId ? worker.progress.watched : 0), 0);
    return this.workers.reduce((sum, worker) => sum + worker.progress[field], 0);
  }

  private broadcast(command: WorkerCommand): void {
    for (const worker of this.workers) worker.child.send(command);
  }

  private async collect(): Promise<WorkerSamples[]> {
    const replies = this.workers.map((worker) => once<WorkerSamples>(worker.child, (m) => m.type === 'samples'));
    this.broadcast({ type: 'collect' });
    const samples = await Promise.all(replies);
    for (const s of samples) this.errorMessages.push(...s.errorMessages.slice(0, 5));
    return samples;
  }

  /** Waits until `done()` or the timeout, reporting progress; returns the elapsed ms or undefined on timeout. */
  private async until(phase: string, done: () => boolean, started: number, pollMs = 20): Promise<number | undefined> {
    const deadline = started + this.options.timeoutSeconds * 1000;
    let lastReport = 0;
    for (;;) {
      const now = performance.now();
      if (done()) return now - started;
      if (now > deadline) return undefined;
      if (now - lastReport > 500) {
        lastReport = now;
        const elapsed = ((now - started) / 1000).toFixed(1);
        this.options.onProgress?.(`[${this.kind}] ${phase}: connected ${this.total('connected')}/${this.options.clients}, configured ${this.total('configured')}, `
          + `watched ${this.total('watched')}, responses ${this.total('responses')}, ${(this.total('bytes') / 1048576).toFixed(1)} MiB, errors ${this.total('errors')}, ${elapsed}s`);
      }
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
  }

  private async phase(name: Scenario, action: () => Promise<void>, done: () => boolean): Promise<PhaseResult> {
    const pid = this.serverPid;
    const sampler = pid ? new RssSampler(pid) : undefined;
    const cpuBefore = pid ? cpuSeconds(pid) : 0;
    const upstreamPid = this.servers.upstream?.pid;
    const upstreamSampler = upstreamPid ? new RssSampler(upstreamPid) : undefined;
    const upstreamCpuBefore = upstreamPid ? cpuSeconds(upstreamPid) : 0;
    const bytesBefore = this.total('bytes');
    const errorsBefore = this.total('errors');
    const reconnectsBefore = this.total('reconnects');
    const started = performance.now();
    await action();
    const totalMs = await this.until(name, done, started);
    // Let late ACKs land before sampling.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const samples = await this.collect();
    const flat = (pick: (s: WorkerSamples) => number[]) => samples.flatMap(pick);
    const receive = flat((s) => s.receiveMs);
    const configured = flat((s) => s.timeToConfigMs);
    this.rawSamples.set(name, { receive, configured });
    return {
      totalMs,
      complete: name === 'connect' ? this.total('configured') : this.total('watched'),
      ...(receive.length > 0 ? { receive: summarize(receive), ack: summarize(flat((s) => s.ackMs)) } : {}),
      ...(configured.length > 0 ? { timeToConfig: summarize(configured) } : {}),
      serverCpuSeconds: pid ? cpuSeconds(pid) - cpuBefore : undefined,
      serverPeakRssBytes: sampler?.stop(),
      upstreamCpuSeconds: upstreamPid ? cpuSeconds(upstreamPid) - upstreamCpuBefore : undefined,
      upstreamPeakRssBytes: upstreamSampler?.stop(),
      bytesReceived: this.total('bytes') - bytesBefore,
      errors: this.total('errors') - errorsBefore,
      reconnects: this.total('reconnects') - reconnectsBefore,
    };
  }


  /** Applies a mesh change everywhere and returns the push stamp the clients must reach. */
  private async push(next: MeshModel): Promise<PushStamp> {
    this.mesh = next;
    const pushes = await Promise.all(this.servers.driven.map((server) => server.apply(next)));
    return pushes.at(-1)!;
  }

  private async watchPush(typeUrl: string, next: MeshModel): Promise<void> {
    const stamp = await this.push(next);
    this.broadcast({ type: 'watch', id: ++this.watchId, typeUrl, stamp });
  }

  async execute(): Promise<TargetResult> {
    const { clients, scenarios } = this.options;
    const result: TargetResult = {
      target: this.kind, phases: {}, samples: { timeToConfigMs: [], edsReceiveMs: [] }, server: {}, downstreamBytes: 0, nacksSent: 0,
      correctness: { checked: 0, matching: 0, expectedHashes: 0 }, errorMessages: this.errorMessages,
    };
    const pid = this.serverPid;
    if (pid) result.server.startRssBytes = rssBytes(pid);
    await this.startWorkers();
    const allWatched = () => this.total('watched') >= clients;
    result.phases.connect = await this.phase('connect', async () => {
      this.broadcast({ type: 'connect', ratePerSecond: this.options.connectRate });
    }, () => this.total('configured') >= clients);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    if (pid) {
      result.server.idleRssBytes = rssBytes(pid);
      result.server.idleRssPerVmKiB = (result.server.idleRssBytes - (result.server.startRssBytes ?? 0)) / 1024 / clients;
    }
    const upstreamPid = this.servers.upstream?.pid;
    if (upstreamPid) result.server.upstreamIdleRssBytes = rssBytes(upstreamPid);
    const has = (scenario: Scenario) => scenarios.includes(scenario);
    if (has('eds')) result.phases.eds = await this.phase('eds', () => this.watchPush(TypeUrl.endpoint, changeOneEndpoint(this.mesh, this.step++)), allWatched);
    if (has('bulk')) {
      const bulk = bulkChange(this.mesh, this.options.bulkKib);
      const phase = await this.phase('bulk', () => this.watchPush(TypeUrl.endpoint, bulk.mesh), allWatched);
      result.phases.bulk = { ...phase, updateBytes: bulk.bytes };
    }
    if (has('cds')) result.phases.cds = await this.phase('cds', () => this.watchPush(TypeUrl.cluster, addService(this.mesh, this.step++)), allWatched);
    if (has('churn')) {
      result.phases.churn = await this.phase('churn', async () => {
        const intervalMs = 1000 / this.options.churnRate;
        const end = performance.now() + this.options.churnSeconds * 1000;
        let next = changeOneEndpoint(this.mesh, this.step++);
        while (performance.now() < end) {
          await this.push(next);
          next = changeOneEndpoint(this.mesh, this.step++);
          await new Promise((resolve) => setTimeout(resolve, intervalMs));
        }
        await this.watchPush(TypeUrl.endpoint, next);
      }, allWatched);
    }
    // The baseline has no upstream behind it: a restart of the simulated istiod does not concern it.
    const restartable = this.kind === 'baseline' ? undefined : this.servers.upstream?.restart;
    if (has('upstream-restart') && restartable) {
      result.phases['upstream-restart'] = await this.phase('upstream-restart', async () => {
        await restartable(1000);
        await this.watchPush(TypeUrl.endpoint, changeOneEndpoint(this.mesh, this.step++));
      }, allWatched);
    }
    if (has('reconnect')) {
      result.phases.reconnect = await this.phase('reconnect', async () => {
        this.broadcast({ type: 'reconnect-all' });
        await this.until('reconnect', () => this.total('connected') >= clients, performance.now());
        await this.watchPush(TypeUrl.endpoint, changeOneEndpoint(this.mesh, this.step++));
      }, allWatched);
    }
    result.samples = { timeToConfigMs: this.rawSamples.get('connect')?.configured ?? [], edsReceiveMs: this.rawSamples.get('eds')?.receive ?? [] };
    result.downstreamBytes = this.total('bytes');
    result.nacksSent = this.total('nacks');
    await this.quiet();
    if (this.servers.target.adminUrl) result.upstream = await upstreamCounters(this.servers.target.adminUrl);
    result.correctness = await this.checkCorrectness();
    return result;
  }

  /** Waits until no client has received anything for a second (at most the timeout), so hashes compare settled config. */
  private async quiet(): Promise<void> {
    let last = -1;
    await this.until('settling', () => {
      const responses = this.total('responses');
      if (responses === last) return true;
      last = responses;
      return false;
    }, performance.now(), 1000);
  }

  /**
   * Every client's config hash against a reference client of its group connected straight to the
   * upstream; for an external target, against the most common hash in the group.
   */
  private async checkCorrectness(): Promise<TargetResult['correctness']> {
    const hashes = (await this.collect()).flatMap((s) => s.hashes);
    const { groups, protocol, timeoutSeconds, clients, boundEvery } = this.options;
    // VMs configured alike: one group's, apart for the address-bound ones (--bound-every).
    const classOf = (index: number) => `${index % groups}${isBound(index, boundEvery) ? '/bound' : ''}`;
    const expected = new Map<string, string>();
    const decoder = new ResourceDecoder();
    const upstream = this.servers.upstream;
    for (let index = 0; index < clients; index++) {
      const kind = classOf(index);
      if (expected.has(kind)) continue;
      if (upstream) expected.set(kind, await referenceHash(upstream.target, protocol, clientNode(index, groups), decoder, timeoutSeconds));
      else expected.set(kind, mostCommon(hashes.filter((h) => classOf(h.index) === kind).map((h) => h.hash)));
    }
    const matching = hashes.filter(({ index, hash }) => expected.get(classOf(index)) === hash).length;
    return { checked: hashes.length, matching, expectedHashes: new Set(expected.values()).size };
  }

  async stop(): Promise<void> {
    await Promise.all(this.workers.map(async (worker) => {
      const exited = new Promise((resolve) => worker.child.once('exit', resolve));
      worker.child.send({ type: 'stop' } satisfies WorkerCommand);
      await exited;
    }));
  }
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

async function upstreamCounters(adminUrl: string): Promise<NonNullable<TargetResult['upstream']>> {
  const groups = await (await fetch(`${adminUrl}/debug/groups`)).json() as Array<{ upstream: { state: string; bytesReceived: number } }>;
  const streams = groups.filter((g) => g.upstream.state === 'streaming').length;
  return { streams, notStreaming: groups.length - streams, bytesReceived: groups.reduce((sum, g) => sum + g.upstream.bytesReceived, 0) };
}

/** Runs every requested target one after the other, each with a fresh upstream and identical clients. */
export async function runXdsBench(options: XdsBenchOptions): Promise<TargetResult[]> {
  const results: TargetResult[] = [];
  for (const kind of options.targets) {
    const mesh = profileMesh(options.profile);
    const closers: Array<() => Promise<void>> = [];
    try {
      let servers: Topology;
      if (kind === 'external') {
        servers = { target: options.external!, driven: [], upstream: undefined };
      } else if (options.upstream) {
        if (kind === 'baseline') throw new Error('the baseline serves the simulated mesh: it cannot stand in for an upstream the bench does not start');
        if (kind === 'direct') servers = { target: options.upstream, driven: [], upstream: options.upstream };
        else {
          const relay = await startRelay(kind, options.upstream, options);
          closers.push(() => relay.stop());
          servers = { target: { target: relay.address, pid: relay.pid, adminUrl: relay.adminUrl }, driven: [], upstream: options.upstream };
        }
      } else {
        const sim = await startSim(mesh);
        closers.push(() => sim.close());
        if (kind === 'direct') servers = { target: sim, driven: [sim], upstream: sim };
        else if (kind === 'baseline') {
          const baseline = await startBaseline(mesh);
          closers.push(() => baseline.close());
          servers = { target: baseline, driven: [sim, baseline], upstream: sim };
        } else {
          const relay = await startRelay(kind, sim, options);
          closers.push(() => relay.stop());
          servers = { target: { target: relay.address, pid: relay.pid, adminUrl: relay.adminUrl }, driven: [sim], upstream: sim };
        }
      }
      // Only the connect storm needs no change to the upstream's config.
      const connectOnly = kind === 'external' || options.upstream !== undefined;
      const run = new Run(connectOnly ? { ...options, scenarios: ['connect'] } : options, kind, servers);
      closers.unshift(() => run.stop());
      results.push(await run.execute());
    } finally {
      for (const close of closers) await close().catch(() => undefined);
    }
  }
  return results;
}
