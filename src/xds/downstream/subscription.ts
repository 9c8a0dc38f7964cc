import { WILDCARD } from '../protocol/type-urls.js';

/** The difference a request made to a subscription, as the upstream side needs to hear it. */
export interface InterestChange {
  wildcard: 1 | -1 | 0;
  added: string[];
  removed: string[];
}

/**
 * One stream's subscription to one type, with xds_protocol's wildcard rules: `*` is an explicit
 * wildcard; an empty first request is a legacy wildcard, which in SotW lasts only until the client
 * names a resource.
 */
export class Subscription {
  wildcard = false;
  readonly names = new Set<string>();
  private everNamed = false;

  /** SotW: each request carries the whole name list. */
  replaceSotw(requested: readonly string[]): InterestChange {
    const explicitWildcard = requested.includes(WILDCARD);
    const named = requested.filter((name) => name !== WILDCARD);
    if (named.length > 0) this.everNamed = true;
    const wildcard = explicitWildcard || (requested.length === 0 && !this.everNamed);
    const next = new Set(named);
    const added = named.filter((name) => !this.names.has(name));
    const removed = [...this.names].filter((name) => !next.has(name));
    for (const name of removed) this.names.delete(name);
    for (const name of added) this.names.add(name);
    return this.setWildcard(wildcard, added, removed);
  }

  /** Delta: requests carry changes; only the stream's first request can be a legacy wildcard. */
  updateDelta(subscribe: readonly string[], unsubscribe: readonly string[], firstRequest: boolean): InterestChange {
    let wildcard = this.wildcard;
    if (firstRequest && subscribe.length === 0) wildcard = true;
    const added: string[] = [];
    const removed: string[] = [];
    for (const name of subscribe) {
      if (name === WILDCARD) wildcard = true;
      else if (!this.names.has(name)) { this.names.add(name); added.push(name); }
    }
    for (const name of unsubscribe) {
      if (name === WILDCARD) wildcard = false;
      else if (this.names.delete(name)) removed.push(name);
    }
    return this.setWildcard(wildcard, added, removed);
  }

  /** What to withdraw from the upstream when the stream goes away. */
  release(): InterestChange {
    const change: InterestChange = { wildcard: this.wildcard ? -1 : 0, added: [], removed: [...this.names] };
    this.wildcard = false;
    this.names.clear();
    return change;
  }

  private setWildcard(wildcard: boolean, added: string[], removed: string[]): InterestChange {
    const delta = wildcard === this.wildcard ? 0 : wildcard ? 1 : -1;
    this.wildcard = wildcard;
    return { wildcard: delta, added, removed };
  }
}

export function isEmptyChange(change: InterestChange): boolean {
  return change.wildcard === 0 && change.added.length === 0 && change.removed.length === 0;
}
