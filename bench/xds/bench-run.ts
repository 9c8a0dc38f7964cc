import { setTimeout as sleep } from 'node:timers/promises';
import { BENCH_SCENARIOS } from '../../src/config/schema.js';
import type { MeshModel } from '../../src/sim/mesh-model.js';
import { cpuSeconds, rssBytes, RssSampler } from '../process-stats.js';
import { adminGet, relayMetrics } from '../relay-process.js';
import { summarize } from '../stats.js';
import type { Topology } from './bench-servers.js';
import { checkCorrectness } from './correctness.js';
import { ResourceDecoder } from './envoy-client.js';
import { profileMesh } from './profiles.js';
import { SCENARIO_STEPS, type ScenarioRun } from './scenarios.js';
import { FleetProcesses } from './fleet-processes.js';
import type { WorkerSamples } from './worker.js';
import type { Pids } from '../process-stats.js';
import type { PhaseResult, Scenario, TargetKind, TargetResult, XdsBenchOptions } from './xds-bench-types.js';

/** One target's run: the fleet of simulated VMs in worker processes, the connect storm, then each scenario. */
export class BenchRun implements ScenarioRun {
  private readonly fleet: FleetProcesses;
  mesh: MeshModel;
  private step = 0;
  /** Each phase's raw latency samples, for the report's CDF plots. */
  private readonly rawSamples = new Map<Scenario, { receive: number[]; configured: number[] }>();

  /** What the run has measured so far: all of it once execute() resolves, the phases before a failure otherwise. */
  readonly result: TargetResult;

  constructor(readonly options: XdsBenchOptions, readonly kind: TargetKind, private readonly servers: Topology) {
    this.mesh = profileMesh(options.profile);
    this.result = emptyResult(kind);
    this.fleet = new FleetProcesses(options, kind, { messages: this.result.errorMessages, kinds: this.result.errorKinds });
  }

  get upstream(): Topology['upstream'] {
    return this.servers.upstream;
  }

  private get serverPid(): Pids | undefined {
    return this.servers.target.pid;
  }

  nextStep(): number {
    return this.step++;
  }

  allWatched(): boolean {
    return this.fleet.total('watched') >= this.options.clients;
  }

  async execute(): Promise<TargetResult> {
    const { clients, scenarios } = this.options;
    const result = this.result;
    const pid = this.serverPid;
    if (pid) result.server.startRssBytes = rssBytes(pid);
    this.fleet.start(this.servers.target.shards ?? [this.servers.target.target]);
    result.phases.connect = await this.measure('connect', async () => {
      this.fleet.broadcast({ type: 'connect', ratePerSecond: this.options.connectRate });
    }, () => this.fleet.total('configured') >= clients);
    await sleep(1000);
    if (pid) {
      result.server.idleRssBytes = rssBytes(pid);
      result.server.idleRssPerVmKiB = (result.server.idleRssBytes - (result.server.startRssBytes ?? 0)) / 1024 / clients;
    }
    const upstreamPid = this.servers.upstream?.pid;
    if (upstreamPid) result.server.upstreamIdleRssBytes = rssBytes(upstreamPid);
    for (const scenario of BENCH_SCENARIOS) {
      if (scenario === 'connect' || !scenarios.includes(scenario)) continue;
      const phase = await SCENARIO_STEPS[scenario](this);
      if (phase) result.phases[scenario] = phase;
    }
    result.samples = { timeToConfigMs: this.rawSamples.get('connect')?.configured ?? [], edsReceiveMs: this.rawSamples.get('eds')?.receive ?? [] };
    result.downstreamBytes = this.fleet.total('bytes');
    result.loadGeneratorLoopDelayMaxMs = this.fleet.maxLoopDelayMs();
    result.nacksSent = this.fleet.total('nacks');
    await this.fleet.quiet();
    if (this.servers.target.adminUrl) {
      result.upstream = await upstreamCounters(this.servers.target.adminUrl);
      const health = await adminGet(this.servers.target.adminUrl, '/healthz', (response) => response.json()) as { workers?: unknown[] };
      result.server.workers = health.workers?.length ?? 1;
    }
    const hashes = (await this.fleet.collect()).flatMap((s) => s.hashes);
    result.correctness = await checkCorrectness(hashes, this.options, this.servers.upstream, new ResourceDecoder());
    return result;
  }

  /** Cuts the thin link (data stops, sockets stay open) until `heal`. */
  async cutLink(): Promise<void> {
    const link = this.servers.link!;
    await link.toxiproxy.cut(link.proxy);
  }

  async healLink(): Promise<void> {
    const link = this.servers.link!;
    await link.toxiproxy.heal(link.proxy);
  }

  get hasLink(): boolean {
    return this.servers.link !== undefined;
  }

  /**
   * gRPC message bytes that crossed the thin link toward the edge: what the relay's upstream
   * streams received, or, for VMs connected straight across it, what the VMs received. (toxiproxy
   * counts bytes only as connections close, so it cannot tell a phase's share.)
   */
  private async linkBytes(): Promise<number | undefined> {
    if (!this.servers.link) return undefined;
    const adminUrl = this.servers.target.adminUrl;
    return adminUrl ? (await upstreamCounters(adminUrl)).bytesReceived : this.fleet.total('bytes');
  }

  /** What a relay target has received from its upstream so far (its metrics' running total). */
  private async upstreamBytes(): Promise<number | undefined> {
    const adminUrl = this.servers.target.adminUrl;
    if (!adminUrl) return undefined;
    const received = (await relayMetrics(adminUrl, ['meshrelay_upstream_received_bytes_total'])).meshrelay_upstream_received_bytes_total;
    return Number.isNaN(received) ? undefined : received;
  }

  async measure(name: Scenario, action: () => Promise<void>, done: () => boolean, timedFrom: 'start' | 'end of action' = 'start'): Promise<PhaseResult> {
    const pid = this.serverPid;
    const sampler = pid ? new RssSampler(pid) : undefined;
    const cpuBefore = pid ? cpuSeconds(pid) : 0;
    const upstreamPid = this.servers.upstream?.pid;
    const upstreamSampler = upstreamPid ? new RssSampler(upstreamPid) : undefined;
    const upstreamCpuBefore = upstreamPid ? cpuSeconds(upstreamPid) : 0;
    const bytesBefore = this.fleet.total('bytes');
    const errorsBefore = this.fleet.total('errors');
    const reconnectsBefore = this.fleet.total('reconnects');
    const linkBytesBefore = await this.linkBytes();
    const upstreamBytesBefore = await this.upstreamBytes();
    let started = performance.now();
    await action();
    if (timedFrom === 'end of action') started = performance.now();
    const totalMs = await this.fleet.until(name, done, started);
    // Let late ACKs land before sampling.
    await sleep(200);
    const samples = await this.fleet.collect();
    const flat = (pick: (s: WorkerSamples) => number[]) => samples.flatMap(pick);
    const receive = flat((s) => s.receiveMs);
    const configured = flat((s) => s.timeToConfigMs);
    this.rawSamples.set(name, { receive, configured });
    const linkBytesAfter = await this.linkBytes();
    const upstreamBytesAfter = await this.upstreamBytes();
    return {
      totalMs,
      complete: name === 'connect' ? this.fleet.total('configured') : this.fleet.total('watched'),
      ...(receive.length > 0 ? { receive: summarize(receive), ack: summarize(flat((s) => s.ackMs)) } : {}),
      ...(configured.length > 0 ? { timeToConfig: summarize(configured) } : {}),
      serverCpuSeconds: pid ? cpuSeconds(pid) - cpuBefore : undefined,
      serverPeakRssBytes: sampler?.stop(),
      upstreamCpuSeconds: upstreamPid ? cpuSeconds(upstreamPid) - upstreamCpuBefore : undefined,
      upstreamPeakRssBytes: upstreamSampler?.stop(),
      bytesReceived: this.fleet.total('bytes') - bytesBefore,
      errors: this.fleet.total('errors') - errorsBefore,
      reconnects: this.fleet.total('reconnects') - reconnectsBefore,
      ...(linkBytesAfter !== undefined ? { linkBytes: linkBytesAfter - (linkBytesBefore ?? 0) } : {}),
      ...(upstreamBytesAfter !== undefined ? { upstreamBytes: upstreamBytesAfter - (upstreamBytesBefore ?? 0) } : {}),
    };
  }

  async push(next: MeshModel): Promise<void> {
    await this.pushStamped(next);
  }

  async watchPush(typeUrl: string, next: MeshModel): Promise<void> {
    const stamp = await this.pushStamped(next);
    this.fleet.broadcast({ type: 'watch', id: ++this.fleet.watchId, typeUrl, stamp });
  }

  async reconnectAll(): Promise<void> {
    this.fleet.broadcast({ type: 'reconnect-all' });
    await this.fleet.until('reconnect', () => this.fleet.total('connected') >= this.options.clients, performance.now());
  }

  async stop(): Promise<void> {
    await this.fleet.stop();
  }

  /** Applies a mesh change everywhere; the push stamp is what the clients must reach. */
  private async pushStamped(next: MeshModel) {
    this.mesh = next;
    const pushes = await Promise.all(this.servers.driven.map((server) => server.apply(next)));
    return pushes.at(-1)!;
  }
}

/** A target's result before anything is measured (what a run that fails at once reports). */
export function emptyResult(target: TargetKind): TargetResult {
  return {
    target, phases: {}, samples: { timeToConfigMs: [], edsReceiveMs: [] }, server: {}, downstreamBytes: 0, nacksSent: 0,
    correctness: { checked: 0, matching: 0, expectedHashes: 0 }, errorMessages: [], errorKinds: {},
  };
}

/**
 * Upstream streams of groups that serve VMs, apart from lingering ones: a VM whose new connection
 * reaches the relay before its old one's close is a second stream of that node, so its old
 * upstream stream lingers unclaimed for the linger window.
 */
export async function upstreamCounters(adminUrl: string): Promise<NonNullable<TargetResult['upstream']>> {
  const groups = await adminGet(adminUrl, '/debug/groups', (response) => response.json()) as Array<{ phase: string; upstream: { state: string; bytesReceived: number } }>;
  const lingering = groups.filter((g) => g.phase === 'lingering').length;
  const serving = groups.filter((g) => g.phase !== 'lingering');
  const streams = serving.filter((g) => g.upstream.state === 'streaming').length;
  return { streams, notStreaming: serving.length - streams, lingering, bytesReceived: groups.reduce((sum, g) => sum + g.upstream.bytesReceived, 0) };
}
