import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log.js';
import type { ResourceCache } from '../xds/cache/resource-cache.js';

const FORMAT_VERSION = 1;
const FILE_NAME = 'upstream-cache.json';
const TEMPORARY_SUFFIX = '.tmp-';

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

/** sha256 of the groups' JSON array, from each group's JSON (no single string of the whole snapshot). */
function checksumOfParts(parts: string[]): string {
  const hash = createHash('sha256').update('[');
  parts.forEach((part, i) => hash.update(i === 0 ? part : `,${part}`));
  return hash.update(']').digest('hex');
}

function checksum(groups: SnapshotGroup[]): string {
  return checksumOfParts(groups.map((group) => JSON.stringify(group)));
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
 * Where the other snapshots of one relay are: with workers, each writes its own under
 * `<root>/worker-<index>`, and the single-process relay writes `<root>` itself; every one of them
 * reads all, so a worker count change or a VM coming back to another worker loses nothing.
 */
export function snapshotSiblings(root: string, own: string): string[] {
  let workers: string[] = [];
  try {
    workers = readdirSync(root).filter((name) => /^worker-\d+$/.test(name)).map((name) => path.join(root, name));
  } catch {
    // No root yet: nothing was written.
  }
  return [root, ...workers].filter((directory) => path.resolve(directory) !== path.resolve(own));
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
  writeFailures = 0;

  /**
   * `maxBytes`: larger snapshots are neither written nor loaded (a giant one could not be parsed
   * without exhausting memory). `siblings`: other directories whose snapshots are read too (the
   * other workers' of one relay: a VM may come back to any worker); this one's own groups win, then
   * the newest file's.
   */
  constructor(private readonly directory: string, private readonly log: Logger, private readonly maxBytes = 256 * 1024 * 1024, private readonly siblings: string[] = []) {
    this.file = path.join(directory, FILE_NAME);
  }

  /** Reads the snapshots; returns how many groups they hold (0 when absent or unusable). */
  load(): number {
    this.removeLeftovers();
    const own = this.read(this.file);
    const others = this.siblings.map((directory) => this.read(path.join(directory, FILE_NAME)))
      .filter((snapshot): snapshot is SnapshotFile => snapshot !== undefined)
      .sort((a, b) => b.writtenAt.localeCompare(a.writtenAt));
    for (const snapshot of [...(own ? [own] : []), ...others]) {
      for (const group of snapshot.groups) if (!this.loaded.has(group.key)) this.loaded.set(group.key, group);
      if (!this.loadedFrom || snapshot.writtenAt > this.loadedFrom) this.loadedFrom = snapshot.writtenAt;
    }
    return this.loaded.size;
  }

  private read(file: string): SnapshotFile | undefined {
    let text: string;
    try {
      const size = statSync(file).size;
      if (size > this.maxBytes) {
        this.log.error({ file, bytes: size, maxBytes: this.maxBytes }, 'cache snapshot is larger than allowed; starting without it');
        return undefined;
      }
      text = readFileSync(file, 'utf8');
    } catch {
      return undefined;
    }
    try {
      const snapshot = JSON.parse(text) as SnapshotFile;
      if (snapshot.format !== FORMAT_VERSION) throw new Error(`format ${snapshot.format}, expected ${FORMAT_VERSION}`);
      if (snapshot.checksum !== checksum(snapshot.groups)) throw new Error('checksum mismatch');
      this.log.info({ file, groups: snapshot.groups.length, writtenAt: snapshot.writtenAt }, 'loaded the upstream cache snapshot');
      return snapshot;
    } catch (error) {
      this.log.error({ file, err: (error as Error).message }, 'cache snapshot is damaged; starting without it');
      return undefined;
    }
  }

  /** The saved cache of a group being created; from then on the live group is what is saved. */
  claim(key: string): SnapshotGroup | undefined {
    const saved = this.loaded.get(key);
    this.loaded.delete(key);
    return saved;
  }

  /** Saved groups no VM has come back for yet: they are written again until they expire. */
  unclaimedGroups(): SnapshotGroup[] {
    return [...this.loaded.values()];
  }

  /**
   * Forgets saved groups still unclaimed: a group no VM came back for within the linger period is
   * closed like any group left empty, instead of being carried from snapshot to snapshot forever.
   */
  expireUnclaimed(): number {
    const expired = this.loaded.size;
    if (expired > 0) this.log.info({ groups: expired }, 'saved groups no VM came back for have expired');
    this.loaded.clear();
    return expired;
  }

  /**
   * Writes a temporary file to the end (a full disk writes short, it does not always throw), syncs
   * it, reads it back and compares, and only then renames it over the previous snapshot.
   */
  write(groups: SnapshotGroup[]): boolean {
    const temporary = `${this.file}${TEMPORARY_SUFFIX}${process.pid}`;
    try {
      // Written a group at a time: the whole snapshot is never one string (V8 caps strings at 512 MiB).
      const parts = groups.map((group) => JSON.stringify(group));
      const total = parts.reduce((sum, part) => sum + part.length + 1, 0);
      if (total > this.maxBytes) throw new Error(`the snapshot would be ${total} bytes, over the limit of ${this.maxBytes} (cacheSnapshotMaxMb)`);
      const header = JSON.stringify({ format: FORMAT_VERSION, writtenAt: new Date().toISOString(), checksum: checksumOfParts(parts) } satisfies Omit<SnapshotFile, 'groups'>);
      const chunks = [`${header.slice(0, -1)},"groups":[`, ...parts.map((part, i) => (i === 0 ? part : `,${part}`)), ']}'];
      const written = createHash('sha256');
      mkdirSync(this.directory, { recursive: true });
      const descriptor = openSync(temporary, 'w', 0o600);
      try {
        for (const chunk of chunks) {
          const bytes = Buffer.from(chunk);
          written.update(bytes);
          for (let offset = 0; offset < bytes.length;) {
            const count = writeSync(descriptor, bytes, offset, bytes.length - offset);
            if (count <= 0) throw new Error(`short write: ${offset} of ${bytes.length} bytes`);
            offset += count;
          }
        }
        fsyncSync(descriptor);
      } finally {
        closeSync(descriptor);
      }
      if (createHash('sha256').update(readFileSync(temporary)).digest('hex') !== written.digest('hex')) throw new Error('the written snapshot does not read back as written');
      renameSync(temporary, this.file);
      this.writes++;
      this.lastWriteError = '';
      return true;
    } catch (error) {
      removeQuietly(temporary);
      this.writeFailures++;
      this.lastWriteError = (error as Error).message;
      this.log.error({ file: this.file, err: this.lastWriteError }, 'cache snapshot not written; the previous one is kept');
      return false;
    }
  }

  /** Temporary files of writes a killed process never finished. */
  private removeLeftovers(): void {
    try {
      for (const name of readdirSync(this.directory)) {
        if (name.startsWith(`${FILE_NAME}${TEMPORARY_SUFFIX}`)) removeQuietly(path.join(this.directory, name));
      }
    } catch {
      // No directory yet: nothing left over.
    }
  }
}

/** Best effort: what cannot be removed (taken by something else) is left. */
function removeQuietly(file: string): void {
  try {
    rmSync(file, { force: true });
  } catch {
    // Not a file of ours to remove.
  }
}
