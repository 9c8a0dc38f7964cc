import { RelayError } from '../../errors.js';

/**
 * A stream's life: it may wait to be authenticated (TLS listener), then for admission, then for
 * its view to be ready (auto-registration); requests arriving meanwhile are held. `admitted` is
 * `new` with admission behind it.
 */
export type SessionPhase = 'authenticating' | 'new' | 'admitting' | 'admitted' | 'attaching' | 'serving' | 'closed';
type WaitingPhase = 'authenticating' | 'admitting' | 'attaching';
const WAITING_PHASES: ReadonlySet<SessionPhase> = new Set<WaitingPhase>(['authenticating', 'admitting', 'attaching']);
const MAX_HELD_REQUESTS = 32;

/**
 * What stands between a stream and being served: the phase it is in, and the requests it sent
 * while it waited, replayed in order when it may go on (connect-es's named connection states).
 */
export class StreamGate {
  private current: SessionPhase = 'new';
  private readonly held: Buffer[] = [];

  constructor(
    /** Handles a request the stream may have handled now. */
    private readonly deliver: (bytes: Buffer) => void,
    /** Ends the stream: a wait failed, or it sent too much while waiting. */
    private readonly refuse: (error: unknown) => void,
  ) {}

  get phase(): SessionPhase {
    return this.current;
  }

  get closed(): boolean {
    return this.current === 'closed';
  }

  receive(bytes: Buffer): void {
    if (this.closed) return;
    if (!WAITING_PHASES.has(this.current)) {
      this.deliver(bytes);
      return;
    }
    if (this.held.length >= MAX_HELD_REQUESTS) {
      this.refuse(new RelayError('MR_TOO_MANY_REQUESTS', 'too many requests before the stream was authenticated and admitted'));
      return;
    }
    this.held.push(bytes);
  }

  /**
   * The stream waits in `phase` until `until` settles, then goes on in `next` (or is refused).
   * `request`, the one that made it wait, is replayed first.
   */
  wait(phase: WaitingPhase, until: Promise<unknown>, next: SessionPhase, request?: Buffer): void {
    if (request) this.held.unshift(request);
    this.enter(phase);
    until.then(() => this.enter(next), this.refuse);
  }

  /**
   * The one place the phase moves. Leaving a waiting phase replays what was held, in order; a
   * replayed request that makes the stream wait again holds the rest behind it.
   */
  enter(phase: SessionPhase): void {
    if (this.closed) return;
    this.current = phase;
    if (phase === 'closed') this.held.length = 0;
    if (WAITING_PHASES.has(phase)) return;
    while (this.held.length > 0 && !WAITING_PHASES.has(this.current) && !this.closed) this.deliver(this.held.shift()!);
  }
}
