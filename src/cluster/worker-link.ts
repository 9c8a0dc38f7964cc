import type { Socket } from 'node:net';
import type { CaSubsystem } from '../ca/ca-setup.js';
import type { ListenAddress } from '../transport/listen-address.js';
import { WORKER_SPEC_ENV, type FromWorker, type ListenerName, type ToWorker, type WorkerSpec } from './worker-protocol.js';

/** How often, at most, a worker with kernel balance tells the coordinator how many connections it holds. */
const LOAD_REPORT_MS = 100;

/**
 * A worker's side of the coordinator's IPC channel: the sockets it is handed, the other workers'
 * internal admin addresses (for views that must cover every worker), and the order to stop.
 */
export class WorkerLink {
  private readonly acceptors = new Map<ListenerName, (socket: Socket) => void>();
  private stopListener: (graceMs: number) => void = () => {};
  private acceptListener: (accepting: boolean) => Promise<void> = async () => {};
  private loadTimer: NodeJS.Timeout | undefined;
  private load = 0;
  /** Every worker's internal admin URL, this one's included, by index ('' while one starts). */
  peers: string[] = [];

  constructor(readonly spec: WorkerSpec) {
    process.on('message', (message: ToWorker, handle?: unknown) => {
      if (message.kind === 'connection' && handle) this.onConnection(message.listener, handle as Socket);
      else if (message.kind === 'peers') this.peers = message.admin;
      else if (message.kind === 'accept') void this.acceptListener(message.accepting).then(() => this.send({ kind: 'accepting', accepting: message.accepting }));
      else if (message.kind === 'stop') this.stopListener(message.graceMs);
    });
  }

  static fromEnvironment(): WorkerLink | undefined {
    const text = process.env[WORKER_SPEC_ENV];
    return text && process.send ? new WorkerLink(JSON.parse(text) as WorkerSpec) : undefined;
  }

  /** Whether the coordinator accepts and hands sockets out (else this worker binds, sharing the socket). */
  get handedConnections(): boolean {
    return this.spec.listeners !== undefined;
  }

  /** The address VMs reach the listener at (the coordinator's), and where its sockets go. */
  serve(listener: ListenerName, accept: (socket: Socket) => void): ListenAddress | undefined {
    this.acceptors.set(listener, accept);
    return this.spec.listeners?.[listener];
  }

  onStop(listener: (graceMs: number) => void): void {
    this.stopListener = listener;
  }

  /** Kernel balance: what to do when the coordinator says to stop or start accepting. */
  onAccept(listener: (accepting: boolean) => Promise<void>): void {
    this.acceptListener = listener;
  }

  /** Kernel balance: the connections this worker holds, batched to one message per LOAD_REPORT_MS. */
  reportLoad(open: number): void {
    this.load = open;
    if (this.loadTimer || this.handedConnections) return;
    this.loadTimer = setTimeout(() => {
      this.loadTimer = undefined;
      this.send({ kind: 'load', open: this.load });
    }, LOAD_REPORT_MS);
    this.loadTimer.unref();
  }

  ready(adminUrl: string, ca: CaSubsystem['summary'] | undefined, listeners: Partial<Record<ListenerName, ListenAddress>>): void {
    this.send({ kind: 'ready', admin: adminUrl, listeners, ...(ca ? { ca } : {}) });
  }

  /** The other workers' internal admin URLs. */
  otherWorkers(): string[] {
    return this.peers.filter((admin, index) => admin !== '' && index !== this.spec.index);
  }

  private onConnection(listener: ListenerName, socket: Socket): void {
    const accept = this.acceptors.get(listener);
    if (!accept) {
      socket.destroy();
      return;
    }
    // The coordinator balances by open connections: it learns of each one's end from here.
    socket.once('close', () => this.send({ kind: 'closed' }));
    accept(socket);
  }

  private send(message: FromWorker): void {
    if (process.connected) process.send?.(message);
  }
}
