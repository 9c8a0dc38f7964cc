import { BenchRun, emptyResult } from './bench-run.js';
import { startTopology } from './bench-servers.js';
import { profileMesh } from './profiles.js';
import type { TargetResult, XdsBenchOptions } from './xds-bench-types.js';

/**
 * Runs every requested target one after the other, each with a fresh upstream and identical clients.
 * A target whose run fails (a process it needs exits, its admin port stops answering) is reported
 * with what it measured before and why it stopped, and the next target still runs.
 */
export async function runXdsBench(options: XdsBenchOptions): Promise<TargetResult[]> {
  const results: TargetResult[] = [];
  for (const kind of options.targets) {
    const closers: Array<() => Promise<void>> = [];
    let run: BenchRun | undefined;
    try {
      const servers = await startTopology(kind, profileMesh(options.profile), options, closers);
      // Only the connect storm needs no change to the upstream's config.
      const connectOnly = kind === 'external' || options.upstream !== undefined;
      run = new BenchRun(connectOnly ? { ...options, scenarios: ['connect'] } : options, kind, servers);
      closers.unshift(() => run!.stop());
      results.push(await run.execute());
    } catch (error) {
      const result = run?.result ?? emptyResult(kind);
      result.failure = error instanceof Error ? `${error.message}${error.cause instanceof Error ? ` (${error.cause.message})` : ''}` : String(error);
      results.push(result);
    } finally {
      for (const close of closers) await close().catch(() => undefined);
    }
  }
  return results;
}
