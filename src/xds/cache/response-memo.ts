import { gzipFrame } from '../../transport/grpc-framing.js';
/** Hands out nonces unique within this process, so they are unique within every stream too. */
export class NonceSource {
  private counter = 0;
  private readonly prefix = Math.floor(Math.random() * 0xffffff).toString(36);

  next(): string {
    return `${this.prefix}-${(++this.counter).toString(36)}`;
  }
}

export interface MemoizedResponse {
  readonly frame: Buffer;
  readonly nonce: string;
  readonly versionInfo: string;
}

const compressed = new WeakMap<MemoizedResponse, Buffer>();

/**
 * A response's frame gzip-compressed, made once however many streams get it (the compressed copy
 * lives as long as the response, and is never larger than it by more than gzip's few bytes).
 */
export function gzippedFrame(response: MemoizedResponse): Buffer {
  let frame = compressed.get(response);
  if (!frame) compressed.set(response, frame = gzipFrame(response.frame));
  return frame;
}

/** What an entry costs beyond its frame (key, map slots), so many tiny entries are bounded too. */
const ENTRY_OVERHEAD_BYTES = 256;
const cost = (entry: MemoizedResponse) => entry.frame.length + ENTRY_OVERHEAD_BYTES;

/**
 * The bytes all memos of the process may keep, least recently used dropped first. An entry only pays
 * off while other streams can still ask for the same response; one built for a subscription nobody
 * else holds (every VM asking for a different set) would otherwise stay until its type changes.
 */
export class MemoLimit {
  /** In order of last use, each with how to remove it from its memo. */
  private readonly entries = new Map<MemoizedResponse, () => void>();
  bytes = 0;
  evictions = 0;

  constructor(readonly maxBytes: number) {}

  admit(entry: MemoizedResponse, forget: () => void): void {
    this.entries.set(entry, forget);
    this.bytes += cost(entry);
    for (const [oldest, forgetOldest] of this.entries) {
      if (this.bytes <= this.maxBytes || oldest === entry) break;
      this.drop(oldest);
      forgetOldest();
      this.evictions++;
    }
  }

  touch(entry: MemoizedResponse): void {
    const forget = this.entries.get(entry);
    if (!forget) return;
    this.entries.delete(entry);
    this.entries.set(entry, forget);
  }

  drop(entry: MemoizedResponse): void {
    if (this.entries.delete(entry)) this.bytes -= cost(entry);
  }
}

/**
 * Serialize-once fan-out (docs/ISTIO-FACTS.md): every stream that needs the same response for the same state
 * of a type gets the same framed bytes and the same nonce. Entries of a type are dropped when that
 * type changes, since their keys carry the generation they were built at.
 */
export class ResponseMemo {
  private readonly byType = new Map<string, Map<string, MemoizedResponse>>();
  hits = 0;
  misses = 0;

  constructor(private readonly nonces: NonceSource, private readonly limit: MemoLimit) {}

  getOrBuild(typeUrl: string, key: string, build: (nonce: string) => { frame: Buffer; versionInfo: string }): MemoizedResponse {
    let entries = this.byType.get(typeUrl);
    if (!entries) {
      entries = new Map();
      this.byType.set(typeUrl, entries);
    }
    const existing = entries.get(key);
    if (existing) {
      this.hits++;
      this.limit.touch(existing);
      return existing;
    }
    this.misses++;
    const nonce = this.nonces.next();
    const built = build(nonce);
    const entry = { frame: built.frame, nonce, versionInfo: built.versionInfo };
    const typeEntries = entries;
    typeEntries.set(key, entry);
    this.limit.admit(entry, () => typeEntries.delete(key));
    return entry;
  }

  has(typeUrl: string, key: string): boolean {
    return this.byType.get(typeUrl)?.has(key) ?? false;
  }

  invalidate(typeUrl: string): void {
    const entries = this.byType.get(typeUrl);
    if (!entries) return;
    for (const entry of entries.values()) this.limit.drop(entry);
    this.byType.delete(typeUrl);
  }

  /** Frees every entry (the memo's view is gone). */
  clear(): void {
    for (const typeUrl of [...this.byType.keys()]) this.invalidate(typeUrl);
  }
}
