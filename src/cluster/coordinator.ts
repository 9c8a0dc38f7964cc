import cluster, { type Worker } from 'node:cluster';
import net from 'node:net';
import { AdminServer } from '../admin/admin-server.js';
import type { CaSubsystem } from '../ca/ca-setup.js';
import { localCaFiles } from '../ca/ca-setup.js';
import { resolveCaMode, workerBalance, type ServeConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import { startEmbeddedSim } from '../sim/sim-server.js';
import type { RunningSim } from '../sim/sim-server.js';
import { LISTEN_BACKLOG } from '../limits/accept-queue.js';
import { formatAddress, parseListenAddress, type ListenAddress } from '../transport/listen-address.js';
import type { ConnectionCapacity } from '../limits/connection-capacity.js';
import { acceptingWorkers } from './accept-governor.js';
import { ConnectionRefusals } from '../transport/connection-gate.js';
import { ConnectionBalancer } from './connection-balancer.js';
import { registerCoordinatorRoutes } from './coordinator-admin.js';
import { WORKER_SPEC_ENV, type FromWorker, type ListenerName, type ToWorker, type WorkerSpec } from './worker-protocol.js';
import { withAllocatorEnv } from '../limits/memory-reclaimer.js';

/** A worker that exits is forked again after this long, doubling to the cap while it keeps failing. */
const RESTART_DELAY_MS = { first: 500, max: 30_000 };
/** Connections that arrive before any worker is ready wait, up to this many. */
const MAX_WAITING_CONNECTIONS = 4096;

export type WorkerState = 'starting' | 'ready' | 'stopping' | 'exited';

export interface WorkerSlot {
  index: number;
  process: Worker | undefined;
  state: WorkerState;
  admin: string | undefined;
  restarts: number;
  ca?: CaSubsystem['summary'];
  /** Kernel balance: connections it last reported, whether it was told to accept, and whether it said it does. */
  open: number;
  toldToAccept: boolean;
  accepting: boolean;
}

/**
 * `meshrelay serve --workers N` (N > 1): this process accepts every VM connection and hands each
 * socket to one of N worker processes, each a whole relay (groups, upstream streams, CA) on its own
 * core; it runs the embedded simulator once, serves the admin port over all workers, restarts a
 * worker that dies and drains them all on SIGTERM (docs/ARCHITECTURE.md "Workers").
 */
export class Coordinator {
  readonly workers: WorkerSlot[] = [];
  readonly addresses: { xds?: ListenAddress; tls?: ListenAddress; admin?: ListenAddress; upstream: string } = { upstream: '' };
  stopping = false;
  private readonly servers: net.Server[] = [];
  private readonly waiting: Array<{ listener: ListenerName; socket: net.Socket }> = [];
  /** Only when this process hands connections out (not with kernel balance). */
  private readonly balancer: ConnectionBalancer | undefined;
  private readonly balance: ReturnType<typeof workerBalance>;
  /** Connections refused because every worker held its share of the pod's (hand-off balance). */
  readonly refusals: ConnectionRefusals;
  private admin: AdminServer | undefined;
  private sim: RunningSim | undefined;
  private spec!: Omit<WorkerSpec, 'index'>;

  readonly count: number;

  private constructor(readonly config: ServeConfig, readonly capacity: ConnectionCapacity, readonly log: Logger) {
    this.count = capacity.workers;
    this.refusals = new ConnectionRefusals(log);
    const balance = this.balance = workerBalance(config);
    this.balancer = balance === 'kernel' ? undefined : new ConnectionBalancer(this.count, balance, capacity.perProcess);
  }

  get embedded(): boolean {
    return this.sim !== undefined;
  }

  /** The CA as the first worker reported it. */
  get caSummary(): CaSubsystem['summary'] | undefined {
    return this.workers.find((worker) => worker.ca)?.ca;
  }

  static async start(config: ServeConfig, capacity: ConnectionCapacity, log: Logger): Promise<Coordinator> {
    const coordinator = new Coordinator(config, capacity, log);
    try {
      await coordinator.assemble();
      return coordinator;
    } catch (error) {
      await coordinator.stop(0);
      throw error;
    }
  }

  private async assemble(): Promise<void> {
    const { config } = this;
    // Made once here so that the workers, started together, do not each make a different dev CA.
    if (resolveCaMode(config) === 'local') localCaFiles(config, this.log, config.tokenReview);
    if (config.upstream === 'embedded') {
      this.sim = await startEmbeddedSim(config, this.log);
      this.addresses.upstream = formatAddress(this.sim.address);
    } else {
      this.addresses.upstream = config.upstream;
    }
    // kernel: the workers accept on one listening socket node:cluster shares (SCHED_NONE), with no
    // hand-off per connection; otherwise this process accepts and picks the worker.
    const kernel = this.balancer === undefined;
    const listeners: WorkerSpec['listeners'] = {};
    if (kernel) cluster.schedulingPolicy = cluster.SCHED_NONE;
    else {
      if (config.xdsListen) listeners.xds = this.addresses.xds = await this.listen('xds', config.xdsListen);
      if (config.tlsListen) listeners.tls = this.addresses.tls = await this.listen('tls', config.tlsListen);
    }
    this.spec = { count: this.count, capacity: this.capacity, ...(kernel ? {} : { listeners }), ...(this.sim ? { embeddedUpstream: this.addresses.upstream } : {}) };
    cluster.setupPrimary({ exec: process.argv[1]!, args: process.argv.slice(2) });
    // However this process ends (the grace period's hard exit included), no worker outlives it.
    process.once('exit', () => { for (const slot of this.workers) if (slot.state !== 'exited') slot.process?.process.kill('SIGKILL'); });
    const started = Array.from({ length: this.count }, (_, index) => {
      const slot: WorkerSlot = { index, process: undefined, state: 'starting', admin: undefined, restarts: 0, open: 0, toldToAccept: true, accepting: true };
      this.workers.push(slot);
      return new Promise<void>((resolve, reject) => this.fork(slot, resolve, reject));
    });
    await Promise.all(started);
    if (config.adminListen) {
      const admin = this.admin = new AdminServer(this.log);
      registerCoordinatorRoutes(admin, this);
      this.addresses.admin = await admin.listen(parseListenAddress(config.adminListen));
    }
    this.log.info({ workers: this.count, balance: this.balance, xds: this.addresses.xds && formatAddress(this.addresses.xds), tls: this.addresses.tls && formatAddress(this.addresses.tls) }, 'meshrelay serving with workers');
  }

  private async listen(listener: ListenerName, address: string): Promise<ListenAddress> {
    // Paused: the worker that is handed the socket reads its first byte (TLS or HTTP/2 preface).
    const server = net.createServer({ pauseOnConnect: true }, (socket) => this.dispatch(listener, socket));
    server.on('error', (error) => this.log.error({ err: error, listener }, 'listener error'));
    const { host, port } = parseListenAddress(address);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port, backlog: LISTEN_BACKLOG }, () => { server.off('error', reject); resolve(); });
    });
    this.servers.push(server);
    const bound = server.address() as net.AddressInfo;
    return { host: bound.address, port: bound.port };
  }

  private dispatch(listener: ListenerName, socket: net.Socket): void {
    socket.on('error', () => { /* the client went away before a worker had it */ });
    const balancer = this.balancer!;
    const index = balancer.pick(socket.remoteAddress, (candidate) => this.workers[candidate]?.state === 'ready');
    const worker = index === undefined ? undefined : this.workers[index]!.process;
    if (index === undefined || !worker) {
      // Workers are serving, but each holds its share of the pod's connections.
      if (this.workers.some((slot) => slot.state === 'ready')) this.refusals.refuse(socket, { limit: this.capacity.pod });
      else if (this.stopping || this.waiting.length >= MAX_WAITING_CONNECTIONS) socket.destroy();
      else this.waiting.push({ listener, socket });
      return;
    }
    worker.send({ kind: 'connection', listener } satisfies ToWorker, socket, (error: Error | null) => {
      if (error) {
        balancer.closed(index);
        socket.destroy();
      }
    });
  }

  private fork(slot: WorkerSlot, started?: () => void, failed?: (error: Error) => void): void {
    const worker = cluster.fork(withAllocatorEnv({ ...process.env, [WORKER_SPEC_ENV]: JSON.stringify({ ...this.spec, index: slot.index } satisfies WorkerSpec) }));
    slot.process = worker;
    slot.state = 'starting';
    // A worker starts listening (kernel balance) and holding nothing.
    Object.assign(slot, { open: 0, toldToAccept: true, accepting: true });
    worker.on('message', (message: FromWorker) => {
      if (message.kind === 'ready') {
        slot.state = this.stopping ? 'stopping' : 'ready';
        slot.admin = message.admin;
        if (message.ca) slot.ca = message.ca;
        // With kernel balance the workers bound the listeners (one shared socket): theirs are the addresses.
        if (!this.spec.listeners) Object.assign(this.addresses, message.listeners);
        this.log.info({ worker: slot.index, pid: worker.process.pid, admin: message.admin }, 'worker ready');
        this.announcePeers();
        for (const waiting of this.waiting.splice(0)) this.dispatch(waiting.listener, waiting.socket);
        this.governAccepting();
        started?.();
      } else if (message.kind === 'closed') {
        this.balancer?.closed(slot.index);
      } else if (message.kind === 'load') {
        slot.open = message.open;
        this.governAccepting();
      } else if (message.kind === 'accepting') {
        slot.accepting = message.accepting;
        this.governAccepting();
      }
    });
    worker.on('exit', (code, signal) => {
      const before = slot.state;
      slot.state = 'exited';
      slot.admin = undefined;
      this.balancer?.reset(slot.index);
      if (this.stopping) return;
      this.governAccepting();
      if (before === 'starting' && failed) {
        failed(new Error(`worker ${slot.index} exited while starting (code ${code}, signal ${signal})`));
        return;
      }
      const delay = Math.min(RESTART_DELAY_MS.max, RESTART_DELAY_MS.first * 2 ** slot.restarts);
      slot.restarts++;
      this.log.error({ worker: slot.index, code, signal, restartInMs: delay }, 'worker exited; its VMs reconnect to the others; starting it again');
      setTimeout(() => { if (!this.stopping) this.fork(slot); }, delay).unref();
    });
  }

  /**
   * Kernel balance: tells each worker whether to accept, from the loads they report
   * (accept-governor.ts). Workers are told to start before any is told to stop, and one stops only
   * while another says it accepts: node:cluster closes the shared socket when no worker listens.
   */
  private governAccepting(): void {
    if (this.balancer || this.stopping) return;
    const serving = this.workers.filter((slot) => slot.state === 'ready' && slot.process?.isConnected());
    const wanted = acceptingWorkers(serving.map((slot) => slot.open), this.capacity.perProcess);
    const tell = (slot: WorkerSlot, accepting: boolean) => {
      slot.toldToAccept = accepting;
      slot.process!.send({ kind: 'accept', accepting } satisfies ToWorker);
    };
    serving.forEach((slot, i) => { if (wanted[i] && !slot.toldToAccept) tell(slot, true); });
    serving.forEach((slot, i) => {
      if (wanted[i] || !slot.toldToAccept) return;
      const another = serving.some((other, j) => other !== slot && wanted[j] && other.toldToAccept && other.accepting);
      if (another) tell(slot, false);
    });
  }

  private announcePeers(): void {
    const admin = this.workers.map((worker) => worker.admin ?? '');
    for (const worker of this.workers) if (worker.state === 'ready') worker.process?.send({ kind: 'peers', admin } satisfies ToWorker);
  }

  /** How long /readyz says 503 before the workers are told to stop. */
  private readinessWindow(graceMs: number): number {
    return Math.min(this.config.readinessDrainSeconds * 1000, graceMs / 2);
  }

  /**
   * SIGTERM: /readyz 503 for the readiness window (new VMs go elsewhere), then no new connections,
   * and every worker drains as a single relay does (GOAWAY, ADS streams ended UNAVAILABLE, CSRs
   * finished, WorkloadEntries marked, a last snapshot) within what is left of the grace period.
   */
  async stop(graceMs = 0): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const window = this.readinessWindow(graceMs);
    if (window > 0) await new Promise((resolve) => setTimeout(resolve, window));
    await Promise.all(this.servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
    for (const waiting of this.waiting.splice(0)) waiting.socket.destroy();
    const remaining = Math.max(0, graceMs - window);
    const exits = this.workers.filter((slot) => slot.process && slot.state !== 'exited').map((slot) => new Promise<void>((resolve) => {
      const worker = slot.process!;
      slot.state = 'stopping';
      const deadline = setTimeout(() => worker.process.kill('SIGKILL'), remaining + 500);
      worker.once('exit', () => { clearTimeout(deadline); resolve(); });
      if (worker.isConnected()) worker.send({ kind: 'stop', graceMs: remaining } satisfies ToWorker);
      else worker.process.kill('SIGTERM');
    }));
    await Promise.all(exits);
    await this.admin?.close();
    await this.sim?.close();
    this.log.info('meshrelay stopped');
  }

  /** Open connections per worker: as the balancer counts them, or as the workers report them (kernel balance). */
  connections(): number[] {
    return this.balancer?.connections() ?? this.workers.map((slot) => slot.open);
  }
}
