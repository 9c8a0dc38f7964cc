/**
 * One copy per distinct resource in the process, however many caches hold it: stream mode keeps a
 * cache per VM, and VMs configured alike hold the same resources (docs/ARCHITECTURE.md "Memory").
 * Cached resources are immutable, so caches share the record itself (name, version, hash strings
 * and body). Each body gets its own allocation: a small one cut from Node's 8 KiB pool, or a view
 * of the upstream message it came in, would keep all of that alive. Entries go with the last cache
 * that holds them.
 */
class Interner<T extends object> {
  private readonly entries = new Map<string, WeakRef<T>>();
  private readonly forgotten = new FinalizationRegistry<string>((key) => {
    if (this.entries.get(key)?.deref() === undefined) this.entries.delete(key);
  });

  get(key: string): T | undefined {
    return this.entries.get(key)?.deref();
  }

  add(key: string, value: T): T {
    this.entries.set(key, new WeakRef(value));
    this.forgotten.register(value, key);
    return value;
  }
}

/** The fields of a cached resource (resource-cache.ts CachedResource). */
interface ResourceRecord {
  readonly name: string;
  readonly version: string;
  readonly hash: string;
  readonly typeUrl: string;
  readonly body: Buffer;
}

const bodies = new Interner<Buffer>();
const resources = new Interner<ResourceRecord>();

function internBody(hash: string, body: Buffer): Buffer {
  const existing = bodies.get(hash);
  if (existing) return existing;
  const own = Buffer.allocUnsafeSlow(body.length);
  body.copy(own);
  return bodies.add(hash, own);
}

/**
 * The shared record for a resource. `resource.hash` is its body's SHA-256 (resource-cache.ts
 * contentHash, 132 bits kept), so equal keys are equal bytes: the bodies are not compared again.
 */
export function internResource<T extends ResourceRecord>(resource: T): T {
  const key = `${resource.typeUrl}\n${resource.name}\n${resource.version}\n${resource.hash}`;
  const existing = resources.get(key) as T | undefined;
  if (existing) return existing;
  return resources.add(key, { ...resource, body: internBody(resource.hash, resource.body) }) as T;
}
