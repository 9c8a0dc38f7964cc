import { readFileSync } from 'node:fs';
import os from 'node:os';

/** cgroup v2, then v1: the container's memory limit; v1 reports "no limit" as a huge number. */
const CGROUP_LIMIT_FILES = ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes'];

/** The memory this process may use: its container's limit, or the machine's memory when there is none. */
export function memoryLimitBytes(): number {
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
  return machine;
}

/** Buffers for slow and unfinished streams may take this share of the memory limit by default. */
const BUFFER_SHARE = 0.25;
const MIN_BUFFER_MB = 64;

export function defaultBufferBudgetMb(limitBytes = memoryLimitBytes()): number {
  return Math.max(MIN_BUFFER_MB, Math.floor((limitBytes * BUFFER_SHARE) / (1024 * 1024)));
}
