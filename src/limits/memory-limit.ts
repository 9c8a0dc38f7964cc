import { readFileSync } from 'node:fs';
import os from 'node:os';

/** cgroup v2, then v1: the container's memory limit; v1 reports "no limit" as a huge number. */
const CGROUP_LIMIT_FILES = ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes'];

/** The memory this process may use: its container's limit, or the machine's memory when there is none. */
export function memoryLimitBytes(): number {
  return containerMemoryLimitBytes() ?? os.totalmem();
}

/** The container's memory limit, if it has one below the machine's memory. */
export function containerMemoryLimitBytes(): number | undefined {
  const machine = os.totalmem();
  for (const file of CGROUP_LIMIT_FILES) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8').trim();
    } catch {
      continue;
    }
    const limit = Number(text);
    if (Number.isFinite(limit) && limit > 0 && limit < machine) return limit;
  }
  return undefined;
}

/** Buffers for slow and unfinished streams may take this share of the memory limit by default. */
const BUFFER_SHARE = 0.25;
const MIN_BUFFER_MB = 64;
/**
 * Without a container limit (a VM or an edge host, where the relay shares the machine), a quarter
 * of the machine would be far more than buffering needs (6 GB on a 24 GiB host), and memory a
 * process once took is slow to go back. A healthy fleet's buffers are one push's shared frames;
 * 1 GiB holds a 100 KiB push to 10,000 VMs that each read nothing of it, many times over.
 */
const UNLIMITED_BUFFER_MB = 1024;

export function defaultBufferBudgetMb(containerLimitBytes = containerMemoryLimitBytes(), machineBytes = os.totalmem()): number {
  const share = Math.floor(((containerLimitBytes ?? machineBytes) * BUFFER_SHARE) / (1024 * 1024));
  return Math.max(MIN_BUFFER_MB, containerLimitBytes === undefined ? Math.min(UNLIMITED_BUFFER_MB, share) : share);
}
