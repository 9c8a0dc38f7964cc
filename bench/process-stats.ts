import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let ticksPerSecond: number | undefined;

/** The kernel's clock ticks per second (getconf CLK_TCK), asked once, when first needed. */
function clockTicks(): number {
  ticksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  return ticksPerSecond;
}

/**
 * The process and its descendants (a relay with workers is a coordinator and its worker
 * processes), from /proc/<pid>/task/<tid>/children.
 */
function processTree(pid: number): number[] {
  const tree = [pid];
  for (let index = 0; index < tree.length; index++) {
    try {
      tree.push(...readFileSync(`/proc/${tree[index]}/task/${tree[index]}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
    } catch {
      // Exited meanwhile.
    }
  }
  return tree;
}

/** A process, or several (a sharded baseline): each with its descendants. */
export type Pids = number | readonly number[];

function sumOverTree(pids: Pids, read: (one: number) => number): number {
  let total = 0;
  let readAny = false;
  for (const one of (typeof pids === 'number' ? [pids] : pids).flatMap(processTree)) {
    try {
      total += read(one);
      readAny = true;
    } catch {
      // Exited meanwhile.
    }
  }
  if (!readAny) throw new Error(`process ${String(pids)} has exited`);
  return total;
}

/** CPU seconds (user + system) a process and its descendants have used, from /proc/<pid>/stat. */
export function cpuSeconds(pid: Pids): number {
  return sumOverTree(pid, (one) => {
    const stat = readFileSync(`/proc/${one}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / clockTicks();
  });
}

/** Resident set size in bytes of a process and its descendants, from /proc/<pid>/status. */
export function rssBytes(pid: Pids): number {
  return sumOverTree(pid, (one) => {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${one}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : 0;
  });
}

/** Samples a process's RSS every `intervalMs` to find the peak over a phase. */
export class RssSampler {
  peak = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly pid: Pids, intervalMs = 100) {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  private sample(): void {
    try {
      this.peak = Math.max(this.peak, rssBytes(this.pid));
    } catch {
      // The process has exited.
    }
  }

  stop(): number {
    clearInterval(this.timer);
    this.sample();
    return this.peak;
  }
}

/** Moves a running process, all its threads, onto a CPU list (taskset -c syntax); '' leaves it. */
export function pinToCpus(pid: Pids | undefined, cpus: string): void {
  if (!cpus || pid === undefined) return;
  for (const one of typeof pid === 'number' ? [pid] : pid) execFileSync('taskset', ['-a', '-p', '-c', cpus, String(one)], { stdio: 'ignore' });
}
