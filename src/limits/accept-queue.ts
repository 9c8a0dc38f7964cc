import { readFileSync } from 'node:fs';

/**
 * The backlog every listener asks for. Linux caps it silently at net.core.somaxconn (4,096 by
 * default since 5.4, per network namespace, so per pod), which is what a reconnect storm meets:
 * connections past a full accept queue have their handshake's last ACK dropped and wait out TCP's
 * retransmission backoff (listen(2), "backlog"; docs/CAPACITY.md "The accept queue").
 */
export const LISTEN_BACKLOG = 65_535;

/** How many completed connections wait for accept() on one listening socket, and what sets it. */
export interface AcceptQueue {
  length: number;
  /** `somaxconn` when the kernel's cap is below the backlog asked for. */
  limitedBy: 'somaxconn' | 'backlog';
}

/** The accept queue a listener gets here; net.core.somaxconn from /proc (unreadable: assumed no cap). */
export function acceptQueue(read: () => string = () => readFileSync('/proc/sys/net/core/somaxconn', 'utf8')): AcceptQueue {
  let somaxconn = Number.NaN;
  try {
    somaxconn = Number(read().trim());
  } catch { /* not Linux, or /proc not mounted */ }
  return Number.isFinite(somaxconn) && somaxconn > 0 && somaxconn < LISTEN_BACKLOG
    ? { length: somaxconn, limitedBy: 'somaxconn' }
    : { length: LISTEN_BACKLOG, limitedBy: 'backlog' };
}
