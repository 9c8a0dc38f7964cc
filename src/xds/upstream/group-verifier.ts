import type { Logger } from '../../log.js';
import { ResourceCache } from '../cache/resource-cache.js';
import type { NodeMessage, XdsProtocol } from '../protocol/envelopes.js';
import { TypeUrl, shortTypeName } from '../protocol/type-urls.js';
import type { BackoffPolicy } from '../../transport/backoff.js';
import type { ConnectionPool } from './connection-pool.js';
import { UpstreamAdsStream } from './upstream-ads-stream.js';
import type { UpstreamGroup } from './upstream-group.js';

/** The types compared: where istiod puts what it derives per proxy (inbound clusters, virtualInbound). */
const VERIFIED_TYPES = [TypeUrl.cluster, TypeUrl.listener];
const POLL_MS = 100;
/** Nothing new for this long: the stream has what istiod computed for the node. */
const QUIET_MS = 1000;
const TIMEOUT_MS = 20_000;
/** A difference is looked at again after this long, so a push reaching one stream first is not a mismatch. */
const RECHECK_MS = 2000;

export interface GroupVerifierOptions {
  pool: ConnectionPool;
  protocol: XdsProtocol;
  backoff: BackoffPolicy;
  /** The share of joining members verified, 0..1. */
  fraction: number;
  log: Logger;
  random?: () => number;
}

export interface VerificationStats {
  matched: number;
  mismatched: number;
  /** Verifications that could not finish (stream refused, no answer in time). */
  inconclusive: number;
}

/** A member to verify: its own node and credential, as istiod would see it directly. */
export interface VerifiedMember {
  nodeId: string;
  upstreamNode: NodeMessage;
  metadata: Record<string, string>;
}

/**
 * The safety net under the group key (docs/ADDRESS-BINDING.md): for a sampled share of the VMs
 * that join a group, one upstream stream with the VM's own node asks istiod what it would send
 * that VM, and its clusters and listeners are compared, name by name and byte by byte, with the
 * group's. A VM served differently is reported to `onMismatch`, which moves it to its own group.
 * istiod's cost: one extra stream per verified VM while it runs (a few seconds).
 */
export class GroupVerifier {
  readonly stats: VerificationStats = { matched: 0, mismatched: 0, inconclusive: 0 };
  private readonly running = new Set<UpstreamAdsStream>();

  constructor(private readonly options: GroupVerifierOptions) {}

  /** Verifies `member` against `group` with probability `fraction`. */
  maybeVerify(group: UpstreamGroup, member: VerifiedMember, onMismatch: (differing: string[]) => void): void {
    if (this.options.fraction <= 0 || (this.options.random ?? Math.random)() >= this.options.fraction) return;
    void this.verify(group, member).then((differing) => {
      if (differing === undefined) this.stats.inconclusive++;
      else if (differing.length === 0) this.stats.matched++;
      else {
        this.stats.mismatched++;
        this.options.log.warn({ node: member.nodeId, group: group.key, differing: differing.slice(0, 10), count: differing.length },
          'verification: istiod configures this VM differently from its group; moving it to a group of its own');
        onMismatch(differing);
      }
    });
  }

  close(): void {
    for (const stream of this.running) stream.close();
    this.running.clear();
  }

  /** The resources that differ (type and name), or undefined when the comparison could not be made. */
  private async verify(group: UpstreamGroup, member: VerifiedMember): Promise<string[] | undefined> {
    const own = new ResourceCache();
    const stream = new UpstreamAdsStream({
      pool: this.options.pool, protocol: this.options.protocol, node: member.upstreamNode, cache: own, metadata: member.metadata,
      backoff: this.options.backoff, log: this.options.log.child({ verifying: member.nodeId }),
    });
    this.running.add(stream);
    for (const typeUrl of VERIFIED_TYPES) stream.setDesired(typeUrl, { wildcard: true, names: new Set() });
    stream.start();
    try {
      if (!(await settled(own, stream)) || !(await settled(group.cache))) return undefined;
      let differing = differences(own, group.cache);
      if (differing.length > 0) {
        await sleep(RECHECK_MS);
        differing = differences(own, group.cache);
      }
      return differing;
    } finally {
      stream.close();
      this.running.delete(stream);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits until every verified type has arrived and nothing changed for a while. */
async function settled(cache: ResourceCache, stream?: UpstreamAdsStream): Promise<boolean> {
  const deadline = Date.now() + TIMEOUT_MS;
  let last = '';
  let quietSince = Date.now();
  while (Date.now() < deadline) {
    if (stream && (stream.stats.state === 'refused' || stream.stats.refusals > 0)) return false;
    const generations = VERIFIED_TYPES.map((typeUrl) => (cache.isInitialized(typeUrl) ? cache.generation(typeUrl) : -1)).join(',');
    if (generations !== last) {
      last = generations;
      quietSince = Date.now();
    } else if (!generations.includes('-1') && Date.now() - quietSince >= QUIET_MS) return true;
    await sleep(POLL_MS);
  }
  return false;
}

function differences(own: ResourceCache, group: ResourceCache): string[] {
  const out: string[] = [];
  for (const typeUrl of VERIFIED_TYPES) {
    const mine = own.all(typeUrl);
    const theirs = group.all(typeUrl);
    for (const [name, resource] of mine) if (theirs.get(name)?.hash !== resource.hash) out.push(`${shortTypeName(typeUrl)} ${name}`);
    for (const name of theirs.keys()) if (!mine.has(name)) out.push(`${shortTypeName(typeUrl)} ${name}`);
  }
  return out;
}
