/** Counters kept across sessions (Prometheus counters must not drop when a VM leaves). */
export class PushCounters {
  readonly pushes = new Map<string, number>();
  readonly nacks = new Map<string, number>();
  /**
   * Called per response written: how long it took to build and write, and how long since the
   * change that caused it reached the cache (istiod: pilot_xds_push_time, pilot_proxy_convergence_time).
   */
  onPush: ((typeUrl: string, pushSeconds: number, convergenceSeconds: number | undefined) => void) | undefined;

  count(map: Map<string, number>, typeUrl: string): void {
    map.set(typeUrl, (map.get(typeUrl) ?? 0) + 1);
  }
}
