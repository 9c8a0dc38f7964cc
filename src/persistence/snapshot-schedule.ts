import type { Logger } from '../log.js';
import type { ResourceCache } from '../xds/cache/resource-cache.js';
import { snapshotOf, type CacheSnapshotStore } from './cache-snapshot.js';

/** What the schedule saves: the group-mode groups' caches, by key. */
export interface SnapshotSource {
  groups(): Array<{ key: string; mode: string; cache: ResourceCache }>;
}

/**
 * Writes the group caches to disk when they changed, every `intervalMs`, and once more on close;
 * saved groups no VM came back for expire after `expireAfterMs` (the groups' linger period).
 */
export class SnapshotSchedule {
  private written = -1;
  private closed = false;
  private readonly timer: NodeJS.Timeout;
  private readonly expiryTimer: NodeJS.Timeout;

  constructor(private readonly store: CacheSnapshotStore, private readonly source: SnapshotSource, intervalMs: number, expireAfterMs: number, private readonly log: Logger) {
    this.timer = setInterval(() => this.writeIfChanged(), intervalMs);
    this.timer.unref();
    this.expiryTimer = setTimeout(() => {
      if (store.expireUnclaimed() > 0) this.write(true);
    }, expireAfterMs);
    this.expiryTimer.unref();
  }

  /** The final snapshot, taken while the groups still hold their caches; once. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    clearTimeout(this.expiryTimer);
    this.write(true);
  }

  private writeIfChanged(): void {
    // A snapshot that cannot be made is reported, never a reason for the relay to stop.
    try {
      this.write(false);
    } catch (error) {
      this.log.error({ err: (error as Error).message }, 'cache snapshot could not be made');
    }
  }

  private write(force: boolean): void {
    const groups = this.source.groups();
    const generation = groups.reduce((sum, group) => sum + group.cache.typeUrls().reduce((s, t) => s + group.cache.generation(t), 0) + group.cache.typeUrls().length, 0);
    if (!force && generation === this.written) return;
    const current = groups.filter((group) => group.mode === 'group').map((group) => snapshotOf(group.key, group.cache));
    // Saved groups whose VMs have not come back yet are kept until they expire.
    if (this.store.write([...current, ...this.store.unclaimedGroups()])) this.written = generation;
  }
}
