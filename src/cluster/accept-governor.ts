/**
 * Above this share of the mean (plus LOAD_SLACK) a worker stops accepting on the shared socket, as
 * the hand-off balancer's bound does (connection-balancer.ts): the kernel gives a connection to
 * whichever worker calls accept() first, and one that is idle for a moment takes a whole burst.
 */
const LOAD_BOUND = 1.1;
/** So that a few connections more than the others do not make a worker stop and start. */
const LOAD_SLACK = 64;
/**
 * A worker stops this share short of its limit: its load reaches the coordinator up to 100 ms late,
 * and what the kernel gives it meanwhile past the limit is refused although the others have room.
 */
const LIMIT_HEADROOM = 0.02;

/**
 * With kernel balance, which workers should accept new connections, from the connections each holds
 * (`open`, one per serving worker) and a worker's limit: those under the limit and within the bound
 * of the mean. At least one always does, so the shared socket stays open (node:cluster closes it
 * when no worker listens): when every worker is full, the least loaded keeps accepting and its
 * connection gate refuses what is past its limit.
 */
export function acceptingWorkers(open: readonly number[], limit: number): boolean[] {
  if (open.length === 0) return [];
  const mean = open.reduce((sum, value) => sum + value, 0) / open.length;
  const bound = LOAD_BOUND * mean + LOAD_SLACK;
  const stopAt = limit - Math.floor(limit * LIMIT_HEADROOM);
  const accepting = open.map((value) => value < stopAt && value <= bound);
  if (!accepting.includes(true)) accepting[open.indexOf(Math.min(...open))] = true;
  return accepting;
}
