import type http2 from 'node:http2';
import type { EventLoopStalls } from './event-loop-stalls.js';

/** Connection-level limits, like grpc-go's keepalive ServerParameters that istiod sets. */
export interface ConnectionPolicy {
  /** Ping an idle-looking connection this often; 0 = never. */
  keepaliveIntervalMs: number;
  /** Close the connection when a ping is not answered within this. */
  keepaliveTimeoutMs: number;
  /** Close a connection with no open stream after this long; 0 = never. */
  idleTimeoutMs: number;
  /** GOAWAY after this age (± jitter/2), so clients rebalance across replicas; 0 = never. */
  maxConnectionAgeMs: number;
  /** Fraction of the age randomised, so connections made together do not all age out together. */
  maxConnectionAgeJitter: number;
  /** After GOAWAY for age, how long open streams may go on before they are ended. */
  maxConnectionAgeGraceMs: number;
}

/** Keepalive intervals a connection may go without a stream before it is pinged anyway. */
const STREAMLESS_INTERVALS = 4;

/**
 * Applies the policy to one HTTP/2 connection. `endStreams` ends that connection's long-lived
 * calls with UNAVAILABLE when its age grace runs out, so clients reconnect (to another replica).
 */
export function manageConnection(session: http2.Http2Session, policy: ConnectionPolicy, endStreams: () => void, random: () => number = Math.random, stalls?: EventLoopStalls): void {
  const timers: NodeJS.Timeout[] = [];
  const clear = () => { for (const timer of timers) clearTimeout(timer); };
  session.once('close', clear);

  if (policy.keepaliveIntervalMs > 0) {
    const ping = () => {
      if (session.closed || session.destroyed) return;
      const sentAt = performance.now();
      const stalledAtSend = stalls?.totalMs ?? 0;
      let answered = false;
      // Judged after this loop iteration's I/O (setImmediate), so an answer already received is
      // read first; the time the process itself was stalled does not count against the peer.
      const judge = () => setImmediate(() => {
        if (answered || session.destroyed) return;
        const heardForMs = performance.now() - sentAt - ((stalls?.totalMs ?? 0) - stalledAtSend);
        if (heardForMs < policy.keepaliveTimeoutMs) deadline = setTimeout(judge, policy.keepaliveTimeoutMs - heardForMs).unref();
        else session.destroy();
      });
      let deadline = setTimeout(judge, policy.keepaliveTimeoutMs).unref();
      try {
        session.ping((error) => {
          answered = true;
          clearTimeout(deadline);
          if (error) session.destroy();
        });
      } catch {
        clearTimeout(deadline);
      }
      timers.push(setTimeout(ping, policy.keepaliveIntervalMs).unref());
    };
    // Pings wait for the connection's first stream: a busy relay reads some new sockets late in a
    // connect storm, and a ping whose answer sits unread behind the VM's first request would end a
    // healthy connection with a GOAWAY that refuses the request (REFUSED_STREAM at the VM). One that
    // opens no stream for STREAMLESS_INTERVALS intervals is pinged all the same (a dead peer).
    let streamSeen = false;
    let waited = 0;
    session.once('stream', () => { streamSeen = true; });
    const first = () => {
      if (streamSeen || ++waited >= STREAMLESS_INTERVALS) ping();
      else timers.push(setTimeout(first, policy.keepaliveIntervalMs).unref());
    };
    timers.push(setTimeout(first, policy.keepaliveIntervalMs).unref());
  }

  if (policy.idleTimeoutMs > 0) {
    session.setTimeout(policy.idleTimeoutMs, () => {
      // 'timeout' fires after idleTimeoutMs without activity; close only if no stream is open.
      const open = (session as unknown as { state?: { streamCount?: number } }).state?.streamCount ?? 0;
      if (open === 0) session.close();
    });
  }

  if (policy.maxConnectionAgeMs > 0) {
    const spread = policy.maxConnectionAgeMs * policy.maxConnectionAgeJitter;
    const age = policy.maxConnectionAgeMs - spread / 2 + random() * spread;
    timers.push(setTimeout(() => {
      session.close();
      timers.push(setTimeout(() => endStreams(), policy.maxConnectionAgeGraceMs).unref());
    }, age).unref());
  }
}
