import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log.js';
import type { ResourceCache } from '../xds/cache/resource-cache.js';

const FORMAT_VERSION = 1;
const FILE_NAME = 'upstream-cache.json';

interface SnapshotResource {
  name: string;
  version: string;
  typeUrl: string;
  body: string;
}

interface SnapshotType {
  typeUrl: string;
  versionInfo: string;
  resources: SnapshotResource[];
}

export interface SnapshotGroup {
  key: string;
  types: SnapshotType[];
}

interface SnapshotFile {
  format: number;
  writtenAt: string;
  checksum: string;
  groups: SnapshotGroup[];
}

function checksum(groups: SnapshotGroup[]): string {
  return createHash('sha256').update(JSON.stringify(groups)).digest('hex');
}

/** One group's cache as snapshot data: every initialized type with its resources' bytes. */
export function snapshotOf(key: string, cache: ResourceCache): SnapshotGroup {
  return {
    key,
    types: cache.typeUrls().filter((typeUrl) => cache.isInitialized(typeUrl)).map((typeUrl) => ({
      typeUrl,
      versionInfo: cache.versionInfo(typeUrl),
      resources: [...cache.all(typeUrl).values()].map((r) => ({ name: r.name, version: r.version, typeUrl: r.typeUrl, body: r.body.toString('base64') })),
    })),
  };
}

/** Fills a group's empty cache from its snapshot, before its upstream stream starts. */
export function restoreInto(cache: ResourceCache, group: SnapshotGroup): void {
  for (const type of group.types) {
    const updates = type.resources.map((r) => ({ name: r.name, version: r.version, typeUrl: r.typeUrl, body: Buffer.from(r.body, 'base64') }));
    cache.apply(type.typeUrl, updates, [], { replaceAll: true, versionInfo: type.versionInfo });
  }
}

/**
 * The upstream caches on disk, for edge sites: a relay restarted while istiod is unreachable
 * serves its VMs the last good config. Writes are atomic (temporary file, fsync, rename) and
 * checksummed; a failed write leaves the previous snapshot intact, a damaged file is ignored.
 */
export class CacheSnapshotStore {
  private readonly file: string;
  private loaded = new Map<string, SnapshotGroup>();
  loadedFrom: string | undefined;
  lastWriteError = '';
  writes = 0;

  constructor(private readonly directory: string, private readonly log: Logger) {
    this.file = path.join(directory, FILE_NAME);
  }

  /** Reads the snapshot; returns how many groups it holds (0 when absent or unusable). */
  load(): number {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch {
      return 0;
    }
    try {
      const snapshot = JSON.parse(text) as SnapshotFile;
      if (snapshot.format !== FORMAT_VERSION) throw new Error(`format ${snapshot.format}, expected ${FORMAT_VERSION}`);
      if (snapshot.checksum !== checksum(snapshot.groups)) throw new Error('checksum mismatch');
      this.loaded = new Map(snapshot.groups.map((group) => [group.key, group]));
      this.loadedFrom = snapshot.writtenAt;
      this.log.info({ file: this.file, groups: snapshot.groups.length, writtenAt: snapshot.writtenAt }, 'loaded the upstream cache snapshot');
      return snapshot.groups.length;
    } catch (error) {
      this.log.error({ file: this.file, err: (error as Error).message }, 'cache snapshot is damaged; starting without it');
      return 0;
    }
  }

  restorable(key: string): SnapshotGroup | undefined {
    return this.loaded.get(key);
  }

  loadedGroups(): SnapshotGroup[] {
    return [...this.loaded.values()];
  }

  write(groups: SnapshotGroup[]): boolean {
    const snapshot: SnapshotFile = { format: FORMAT_VERSION, writtenAt: new Date().toISOString(), checksum: checksum(groups), groups };
    const temporary = `${this.file}.tmp-${process.pid}`;
    try {
      mkdirSync(this.directory, { recursive: true });
      const descriptor = openSync(temporary, 'w', 0o600);
      try {
        writeSync(descriptor, JSON.stringify(snapshot));
        fsyncSync(descriptor);
      } finally {
        closeSync(descriptor);
      }
      renameSync(temporary, this.file);
      this.writes++;
      this.lastWriteError = '';
      return true;
    } catch (error) {
      this.lastWriteError = (error as Error).message;
      this.log.error({ file: this.file, err: this.lastWriteError }, 'cache snapshot not written; the previous one is kept');
      return false;
    }
  }
}
