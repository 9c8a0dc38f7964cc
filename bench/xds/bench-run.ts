import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { BENCH_SCENARIOS } from '../../src/config/schema.js';
import type { MeshModel } from '../../src/sim/mesh-model.js';
import { cpuSeconds, pinToCpus, rssBytes, RssSampler } from '../process-stats.js';
import { adminGet, relayMetrics } from '../relay-process.js';
import { summarize } from '../stats.js';
import { once, type Topology } from './bench-servers.js';
import { checkCorrectness } from './correctness.js';
import { ResourceDecoder } from './envoy-client.js';
import { clientNode } from './fleet.js';
import { profileMesh } from './profiles.js';
import { SCENARIO_STEPS, type ScenarioRun } from './scenarios.js';
import type { WorkerCommand, WorkerProgress, WorkerSamples } from './worker.js';
import { sourceAddress } from './fleet-layout.js';
import type { Pids } from '../process-stats.js';
import type { PhaseResult, Scenario, TargetKind, TargetResult, XdsBenchOptions } from './xds-bench-types.js';

const here = path.dirname(fileURLToPath(import.meta.url));

interface Worker {
  child: ChildProcess;
  progress: WorkerProgress;
}

/** One target's run: the fleet of simulated VMs in worker processes, the connect storm, then each scenario. */
export class BenchRun implements ScenarioRun {
  private readonly workers: Worker[] = [];
  mesh: MeshModel;
  private step = 0;
  private readonly errorMessages: string[];
  private readonly errorKinds: Record<string, number>;
  /** Each phase's raw latency samples, for the report's CDF plots. */
  private readonly rawSamples = new Map<Scenario, { receive: number[]; configured: number[] }>();
  private watchId = 0;

  /** What the run has measured so far: all of it once execute() resolves, the phases before a failure otherwise. */
  readonly result: TargetResult;

  constructor(readonly options: XdsBenchOptions, readonly kind: TargetKind, private readonly servers: Topology) {
    this.mesh = profileMesh(options.profile);
    this.result = emptyResult(kind);
    this.errorMessages = this.result.errorMessages;
    this.errorKinds = this.result.errorKinds;
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
    return this.total('watched') >= this.options.clients;
  }

  async execute(): Promise<TargetResult> {
    const { clients, scenarios } = this.options;
    const result = this.result;
    const pid = this.serverPid;
    if (pid) result.server.startRssBytes = rssBytes(pid);
    this.startWorkers();
    result.phases.connect = await this.measure('connect', async () => {
      this.broadcast({ type: 'connect', ratePerSecond: this.options.connectRate });
    }, () => this.total('configured') >= clients);
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
    result.downstreamBytes = this.total('bytes');
    result.nacksSent = this.total('nacks');
    await this.quiet();
    if (this.servers.target.adminUrl) {
      result.upstream = await upstreamCounters(this.servers.target.adminUrl);
      const health = await adminGet(this.servers.target.adminUrl, '/healthz', (response) => response.json()) as { workers?: unknown[] };
      result.server.workers = health.workers?.length ?? 1;
    }
    const hashes = (await this.collect()).flatMap((s) => s.hashes);
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
    return adminUrl ? (await upstreamCounters(adminUrl)).bytesReceived : this.total('bytes');
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
    const bytesBefore = this.total('bytes');
    const errorsBefore = this.total('errors');
    const reconnectsBefore = this.total('reconnects');
    const linkBytesBefore = await this.linkBytes();
    const upstreamBytesBefore = await this.upstreamBytes();
    let started = performance.now();
    await action();
    if (timedFrom === 'end of action') started = performance.now();
    const totalMs = await this.until(name, done, started);
    // Let late ACKs land before sampling.
    await sleep(200);
    const samples = await this.collect();
    const flat = (pick: (s: WorkerSamples) => number[]) => samples.flatMap(pick);
    const receive = flat((s) => s.receiveMs);
    const configured = flat((s) => s.timeToConfigMs);
    this.rawSamples.set(name, { receive, configured });
    const linkBytesAfter = await this.linkBytes();
    const upstreamBytesAfter = await this.upstreamBytes();
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
      ...(linkBytesAfter !== undefined ? { linkBytes: linkBytesAfter - (linkBytesBefore ?? 0) } : {}),
      ...(upstreamBytesAfter !== undefined ? { upstreamBytes: upstreamBytesAfter - (upstreamBytesBefore ?? 0) } : {}),
    };
  }

  async push(next: MeshModel): Promise<void> {
    await this.pushStamped(next);
  }

  async watchPush(typeUrl: string, next: MeshModel): Promise<void> {
    const stamp = await this.pushStamped(next);
    this.broadcast({ type: 'watch', id: ++this.watchId, typeUrl, stamp });
  }

  async reconnectAll(): Promise<void> {
    this.broadcast({ type: 'reconnect-all' });
    await this.until('reconnect', () => this.total('connected') >= this.options.clients, performance.now());
  }

  async stop(): Promise<void> {
    await Promise.all(this.workers.map(async (worker) => {
      const exited = new Promise((resolve) => worker.child.once('exit', resolve));
      worker.child.send({ type: 'stop' } satisfies WorkerCommand);
      await exited;
    }));
  }

  /** Applies a mesh change everywhere; the push stamp is what the clients must reach. */
  private async pushStamped(next: MeshModel) {
    this.mesh = next;
    const pushes = await Promise.all(this.servers.driven.map((server) => server.apply(next)));
    return pushes.at(-1)!;
  }

  private startWorkers(): void {
    const { clients, groups, workers, protocol, nackFraction, clientsPerAddress } = this.options;
    const targets = this.servers.target.shards ?? [this.servers.target.target];
    const nackEvery = nackFraction > 0 ? Math.max(1, Math.round(1 / nackFraction)) : 0;
    for (let w = 0; w < workers; w++) {
      const child = fork(path.join(here, 'worker.js'), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      pinToCpus(child.pid, this.options.clientCpus);
      const worker: Worker = { child, progress: { type: 'progress', connected: 0, configured: 0, responses: 0, bytes: 0, errors: 0, nacks: 0, reconnects: 0, watched: 0, watchId: 0 } };
      child.on('message', (message: WorkerProgress | WorkerSamples) => { if (message.type === 'progress') worker.progress = message; });
      const specs = [];
      for (let i = w; i < clients; i += workers) {
        specs.push({ index: i, node: clientNode(i, groups), nack: nackEvery > 0 && i % nackEvery === nackEvery - 1, source: sourceAddress(i, clientsPerAddress) });
      }
      child.send({ type: 'init', targets, protocol, clients: specs } satisfies WorkerCommand);
      this.workers.push(worker);
    }
  }

  private total(field: keyof Omit<WorkerProgress, 'type' | 'watchId' | 'lastError'>): number {
    if (field === 'watched') return this.workers.reduce((sum, worker) => sum + (worker.progress.watchId === this.watchId ? worker.progress.watched : 0), 0);
    return this.workers.reduce((sum, worker) => sum + worker.progress[field], 0);
  }

  private lastError(): string | undefined {
    return this.workers.map((worker) => worker.progress.lastError).find((kind) => kind !== undefined);
  }

  private broadcast(command: WorkerCommand): void {
    for (const worker of this.workers) worker.child.send(command);
  }

  private async collect(): Promise<WorkerSamples[]> {
    const replies = this.workers.map((worker) => once<WorkerSamples>(worker.child, (m) => m.type === 'samples'));
    this.broadcast({ type: 'collect' });
    const samples = await Promise.all(replies);
    for (const s of samples) {
      this.errorMessages.push(...s.errorMessages.slice(0, 5));
      for (const [kind, count] of Object.entries(s.errorKinds)) this.errorKinds[kind] = (this.errorKinds[kind] ?? 0) + count;
    }
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
          + `watched ${this.total('watched')}, responses ${this.total('responses')}, ${(this.total('bytes') / 1048576).toFixed(1)} MiB, errors ${this.total('errors')}, ${elapsed}s`
          + `${this.lastError() ? ` (last: ${this.lastError()})` : ''}`);
      }
      await sleep(pollMs);
    }
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
async function upstreamCounters(adminUrl: string): Promise<NonNullable<TargetResult['upstream']>> {
  const groups = await adminGet(adminUrl, '/debug/groups', (response) => response.json()) as Array<{ phase: string; upstream: { state: string; bytesReceived: number } }>;
  const lingering = groups.filter((g) => g.phase === 'lingering').length;
  const serving = groups.filter((g) => g.phase !== 'lingering');
  const streams = serving.filter((g) => g.upstream.state === 'streaming').length;
  return { streams, notStreaming: serving.length - streams, lingering, bytesReceived: groups.reduce((sum, g) => sum + g.upstream.bytesReceived, 0) };
}
