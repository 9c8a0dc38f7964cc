import type { Socket } from 'node:net';
import type { Logger } from '../log.js';

/** A refusal is logged at most this often (a full pod in a connect storm refuses thousands a second). */
const REFUSAL_LOG_INTERVAL_MS = 10_000;

/**
 * A process's VM connections across its listeners, held under the limit its open files allow
 * (docs/CAPACITY.md). A connection past the limit is closed as soon as it is accepted, counted and
 * logged: the client sees the connection reset and retries with its backoff, where an accept()
 * that failed with EMFILE would have failed again and again while the process could open nothing
 * else (not even its admin port's connections).
 */
export class ConnectionGate {
  open = 0;
  private readonly refusals: ConnectionRefusals;
  private readonly watchers: Array<(open: number) => void> = [];

  constructor(readonly limit: number, log: Logger, now: () => number = Date.now) {
    this.refusals = new ConnectionRefusals(log, now);
  }

  get refused(): number {
    return this.refusals.count;
  }

  get full(): boolean {
    return this.open >= this.limit;
  }

  /** Whether the socket may be served; a refused one is destroyed here. */
  admit(socket: Socket): boolean {
    if (this.open >= this.limit) {
      this.refusals.refuse(socket, { open: this.open, limit: this.limit });
      return false;
    }
    this.open++;
    socket.once('close', () => {
      this.open--;
      this.notify();
    });
    this.notify();
    return true;
  }

  /** Called with the open count after each change (a worker reports its load from here). */
  onChange(watcher: (open: number) => void): void {
    this.watchers.push(watcher);
  }

  private notify(): void {
    for (const watcher of this.watchers) watcher(this.open);
  }
}

/** Connections closed at once for want of room: counted, and logged at most every REFUSAL_LOG_INTERVAL_MS. */
export class ConnectionRefusals {
  count = 0;
  private lastLog = Number.NEGATIVE_INFINITY;

  constructor(private readonly log: Logger, private readonly now: () => number = Date.now) {}

  refuse(socket: Socket, detail: Record<string, number>): void {
    this.count++;
    socket.destroy();
    const now = this.now();
    if (now - this.lastLog < REFUSAL_LOG_INTERVAL_MS) return;
    this.lastLog = now;
    this.log.warn({ ...detail, refused: this.count }, 'connection limit reached: new VM connections are refused until some close (raise the open-file limit, or add workers or replicas)');
  }
}
