import type http2 from 'node:http2';

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
export function manageConnection(session: http2.Http2Session, policy: ConnectionPolicy, endStreams: () => void, random: () => number = Math.random): void {
  const timers: NodeJS.Timeout[] = [];
  const clear = () => { for (const timer of timers) clearTimeout(timer); };
  session.once('close', clear);

  if (policy.keepaliveIntervalMs > 0) {
    const ping = () => {
      if (session.closed || session.destroyed) return;
      const deadline = setTimeout(() => session.destroy(), policy.keepaliveTimeoutMs);
      deadline.unref();
      try {
        session.ping((error) => {
          clearTimeout(deadline);
          if (error) session.destroy();
        });
      } catch {
        clearTimeout(deadline);
      }
      timers.push(setTimeout(ping, policy.keepaliveIntervalMs).unref());
    };
    timers.push(setTimeout(ping, policy.keepaliveIntervalMs).unref());
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
