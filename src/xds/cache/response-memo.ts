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

const MAX_ENTRIES_PER_TYPE = 512;

/**
 * Serialize-once fan-out (docs/ISTIO-FACTS.md): every stream that needs the same response for the same state
 * of a type gets the same framed bytes and the same nonce. Entries of a type are dropped when that
 * type changes, since their keys carry the generation they were built at.
 */
export class ResponseMemo {
  private readonly byType = new Map<string, Map<string, MemoizedResponse>>();
  hits = 0;
  misses = 0;

  constructor(private readonly nonces: NonceSource) {}

  getOrBuild(typeUrl: string, key: string, build: (nonce: string) => { frame: Buffer; versionInfo: string }): MemoizedResponse {
    let entries = this.byType.get(typeUrl);
    if (!entries) {
      entries = new Map();
      this.byType.set(typeUrl, entries);
    }
    const existing = entries.get(key);
    if (existing) {
      this.hits++;
      return existing;
    }
    this.misses++;
    const nonce = this.nonces.next();
    const built = build(nonce);
    const entry = { frame: built.frame, nonce, versionInfo: built.versionInfo };
    if (entries.size >= MAX_ENTRIES_PER_TYPE) entries.clear();
    entries.set(key, entry);
    return entry;
  }

  invalidate(typeUrl: string): void {
    this.byType.delete(typeUrl);
  }
}
