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

/**
 * Applies the policy to one HTTP/2 connection. `endStreams` ends that connection's long-lived
 * calls with UNAVAILABLE when its age grace runs out, so clients reconnect (to another replica).
 */
export function manageConnection(session: http2.Http2Session, policy: ConnectionPolicy, endStreams: () => void, random: () => number = Math.random, stalls?: EventLoopStalls): void {
  const timers: NodeJS.Timeout[] = [];
  const clear = () => { for (const timer of timers) clearTimeout(timer); };
  session.once('close', clear);

  if (policy.keepaliveIntervalMs > 0) session.once('close', keepAlive(session, policy, stalls));

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

/**
 * grpc-go's server keepalive, which istiod runs (internal/transport/http2_server.go, keepalive()):
 * a connection is pinged only after keepaliveIntervalMs in which nothing was read from it, and
 * closed only if nothing at all (the ping's answer or any other frame) is read within
 * keepaliveTimeoutMs after that. A VM that is sending (a connect storm's requests and ACKs) is never
 * pinged; one slow to answer but sending is not closed. "Read" is the bytes the relay has read
 * from the socket, judged after the loop's I/O (setImmediate) so data already waiting is read
 * first, and the time the relay's own event loop was stalled does not count against the peer.
 */
/** Returns what stops it. */
function keepAlive(session: http2.Http2Session, policy: ConnectionPolicy, stalls: EventLoopStalls | undefined): () => void {
  const bytesRead = () => session.socket?.bytesRead ?? 0;
  const stalled = () => stalls?.totalMs ?? 0;
  let timer: NodeJS.Timeout | undefined;
  const later = (ms: number, action: () => void) => { timer = setTimeout(() => setImmediate(action), ms).unref(); };
  const alive = () => !session.closed && !session.destroyed;
  let readAtCheck = bytesRead();
  const check = () => {
    if (!alive()) return;
    const read = bytesRead();
    if (read !== readAtCheck) {
      readAtCheck = read;
      later(policy.keepaliveIntervalMs, check);
      return;
    }
    const sentAt = performance.now();
    const stalledAtSend = stalled();
    try {
      session.ping(() => {});
    } catch {
      return;
    }
    const judge = () => {
      if (!alive()) return;
      if (bytesRead() !== read) {
        readAtCheck = bytesRead();
        later(policy.keepaliveIntervalMs, check);
        return;
      }
      const waitedMs = performance.now() - sentAt - (stalled() - stalledAtSend);
      if (waitedMs < policy.keepaliveTimeoutMs) later(policy.keepaliveTimeoutMs - waitedMs, judge);
      else session.destroy();
    };
    later(policy.keepaliveTimeoutMs, judge);
  };
  later(policy.keepaliveIntervalMs, check);
  return () => clearTimeout(timer);
}
