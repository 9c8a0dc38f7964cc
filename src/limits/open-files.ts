import { readFileSync } from 'node:fs';

/**
 * Descriptors each relay process keeps for what is not a VM connection: its admin port and the
 * coordinator's reads of it, upstream connections to istiod, Kubernetes watches, snapshot and
 * certificate files, IPC. Without them a process at its limit could not answer /readyz or reach
 * istiod (docs/CAPACITY.md).
 */
export const RESERVED_FILES = 256;

/** A process whose limit cannot be read (or is "unlimited") is planned as if it had this many. */
const UNKNOWN_LIMIT = 1_048_576;

/**
 * This process's soft RLIMIT_NOFILE, from /proc/self/limits ("Max open files  <soft>  <hard>  files").
 * Node raises the soft limit to the hard one when it starts, so this is what the process can reach;
 * in a Kubernetes pod it is the container runtime's (often 1,048,576), on a VM the host's.
 */
export function openFileLimit(read: () => string = () => readFileSync('/proc/self/limits', 'utf8')): number {
  let text: string;
  try {
    text = read();
  } catch {
    return UNKNOWN_LIMIT;
  }
  const soft = /^Max open files\s+(\S+)/m.exec(text)?.[1];
  const limit = soft === undefined || soft === 'unlimited' ? Number.NaN : Number(soft);
  return Number.isFinite(limit) && limit > 0 ? limit : UNKNOWN_LIMIT;
}
