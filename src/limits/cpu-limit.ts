import { readFileSync } from 'node:fs';
import os from 'node:os';

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/**
 * The container's CPU quota in cores, rounded up: cgroup v2 `cpu.max` ("quota period" or "max"),
 * then v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1: none). Kubernetes writes a pod's CPU limit
 * there; `os.availableParallelism()` sees only the CPU set, not the quota.
 */
export function cgroupCpuQuota(read: (file: string) => string | undefined = readText): number | undefined {
  const v2 = read('/sys/fs/cgroup/cpu.max');
  if (v2) {
    const [quota, period] = v2.split(/\s+/);
    if (quota !== 'max' && Number(quota) > 0 && Number(period) > 0) return Math.ceil(Number(quota) / Number(period));
    return undefined;
  }
  const quota = Number(read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us') ?? -1);
  const period = Number(read('/sys/fs/cgroup/cpu/cpu.cfs_period_us') ?? 0);
  return quota > 0 && period > 0 ? Math.ceil(quota / period) : undefined;
}

/** The CPUs this process may use: its CPU set (affinity), capped by its container's CPU quota. */
export function cpuLimit(): number {
  const cpuSet = os.availableParallelism();
  const quota = cgroupCpuQuota();
  return Math.max(1, quota === undefined ? cpuSet : Math.min(cpuSet, quota));
}
