import { hash as digest } from 'node:crypto';
import { internResource } from './resource-interner.js';

/** One resource as held by the relay: bytes of the Any, never decoded here. */
export interface CachedResource {
  readonly name: string;
  /** The version the upstream gave it, else its content hash (kept while its bytes do not change). */
  readonly version: string;
  /** Hash of the bytes: what "changed" means across upstream reconnects. */
  readonly hash: string;
  readonly typeUrl: string;
  readonly body: Buffer;
}

export interface ResourceUpdate {
  name: string;
  version?: string;
  body: Buffer;
  /** The Any's type_url; defaults to the collection's type. */
  typeUrl?: string;
}

export interface TypeChange {
  typeUrl: string;
  changed: string[];
  removed: string[];
}

export type ChangeListener = (change: TypeChange) => void;

/** Resources of one type, plus a generation that moves only when their content changes. */
class TypeCollection {
  readonly resources = new Map<string, CachedResource>();
  /** Names the source deleted (not ones we merely forgot), so "absent" can mean "removed". */
  readonly deleted = new Set<string>();
  generation = 0;
  versionInfo = '';
  /** True once the source has answered for this type at least once (even with nothing). */
  initialized = false;
}

/** The one-shot `crypto.hash` (Node ≥ 20.12): a third cheaper than a Hash object per resource. */
export function contentHash(body: Uint8Array): string {
  return digest('sha256', body, 'base64url').slice(0, 22);
}

/**
 * Per-type, per-name cache of raw resources. Applying an update that does not change bytes changes
 * nothing, so an upstream reconnect that resends everything reaches no VM (docs/XDS.md).
 */
export class ResourceCache {
  private readonly types = new Map<string, TypeCollection>();
  private readonly listeners = new Set<ChangeListener>();

  onChange(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  typeUrls(): string[] {
    return [...this.types.keys()];
  }

  get(typeUrl: string, name: string): CachedResource | undefined {
    return this.types.get(typeUrl)?.resources.get(name);
  }

  all(typeUrl: string): ReadonlyMap<string, CachedResource> {
    return this.types.get(typeUrl)?.resources ?? emptyMap;
  }

  generation(typeUrl: string): number {
    return this.types.get(typeUrl)?.generation ?? 0;
  }

  versionInfo(typeUrl: string): string {
    return this.types.get(typeUrl)?.versionInfo ?? '';
  }

  /** True when the source deleted this resource (rather than it never being known or forgotten). */
  wasDeleted(typeUrl: string, name: string): boolean {
    return this.types.get(typeUrl)?.deleted.has(name) ?? false;
  }

  isInitialized(typeUrl: string): boolean {
    return this.types.get(typeUrl)?.initialized ?? false;
  }

  size(): number {
    let total = 0;
    for (const collection of this.types.values()) total += collection.resources.size;
    return total;
  }

  /**
   * Upserts and removes resources of one type. With `replaceAll` (SotW LDS/CDS), every resource not
   * in `updates` is removed. `versionInfo` is the source's version for this state.
   */
  apply(typeUrl: string, updates: ResourceUpdate[], removed: string[], options: { replaceAll?: boolean; versionInfo?: string } = {}): TypeChange {
    const collection = this.collection(typeUrl);
    const wasInitialized = collection.initialized;
    collection.initialized = true;
    const change: TypeChange = { typeUrl, changed: [], removed: [] };
    const seen = options.replaceAll ? new Set<string>() : undefined;
    for (const update of updates) {
      seen?.add(update.name);
      const hash = contentHash(update.body);
      const existing = collection.resources.get(update.name);
      if (existing && existing.hash === hash) continue;
      collection.deleted.delete(update.name);
      collection.resources.set(update.name, internResource({
        name: update.name,
        // istiod gives Delta resources no version of their own (pilot/pkg/xds/delta.go), and its
        // push version is shared by every stream of a push: only the content names a resource's
        // version across groups (a VM moving group resumes with the versions it holds).
        version: update.version || hash,
        hash,
        typeUrl: update.typeUrl || typeUrl,
        body: update.body,
      }));
      change.changed.push(update.name);
    }
    const toRemove = seen ? [...collection.resources.keys()].filter((name) => !seen.has(name)) : removed;
    for (const name of toRemove) {
      if (collection.resources.delete(name)) change.removed.push(name);
      collection.deleted.add(name);
    }
    if (collection.deleted.size > MAX_TOMBSTONES) {
      for (const name of [...collection.deleted].slice(0, collection.deleted.size - MAX_TOMBSTONES)) collection.deleted.delete(name);
    }
    const changed = change.changed.length > 0 || change.removed.length > 0;
    if (changed) {
      collection.generation++;
      collection.versionInfo = nextVersionInfo(collection, options.versionInfo);
    }
    if (changed || !wasInitialized) this.emit(change);
    return change;
  }

  /** Drops resources nobody subscribes to any more, without telling anyone (nobody holds them). */
  forget(typeUrl: string, names: Iterable<string>): void {
    const collection = this.types.get(typeUrl);
    if (!collection) return;
    for (const name of names) collection.resources.delete(name);
  }

  private collection(typeUrl: string): TypeCollection {
    let collection = this.types.get(typeUrl);
    if (!collection) {
      collection = new TypeCollection();
      this.types.set(typeUrl, collection);
    }
    return collection;
  }

  private emit(change: TypeChange): void {
    for (const listener of this.listeners) listener(change);
  }
}

const emptyMap: ReadonlyMap<string, CachedResource> = new Map();
const MAX_TOMBSTONES = 10_000;

/** Keeps the source's version string, but never repeats one for different content. */
function nextVersionInfo(collection: TypeCollection, sourceVersion: string | undefined): string {
  if (!sourceVersion) return String(collection.generation);
  return sourceVersion === collection.versionInfo ? `${sourceVersion}.${collection.generation}` : sourceVersion;
}
