import { ResourceCache } from '../cache/resource-cache.js';
import type { ResponseMemo } from '../cache/response-memo.js';
import type { InterestChange } from '../downstream/subscription.js';
import type { ProxyReport, XdsView } from '../view.js';
import type { JsonValue } from '../protocol/struct.js';
import { GrpcStatus, RelayError, UpstreamStatusError } from '../../errors.js';
import { GroupCredentials, memberCredentials } from './group-credentials.js';
import { CREDENTIAL_REFUSALS, type UpstreamAdsStream, type UpstreamRefusal } from './upstream-ads-stream.js';
import type { StreamIdentity } from '../view.js';
import type { ProxyNode } from '../protocol/node.js';

/** Names coming due within this long of each other are judged in one audit. */
const AUDIT_BATCH_MS = 250;
/** How often dropping unwanted names is tried again while the upstream is away. */
const FORGET_RETRY_MS = 1000;
export const DEFAULT_FIRST_RESPONSE_TIMEOUT_MS = 15_000;

/**
 * Names a VM may subscribe to that the upstream does not have. Envoy asks for EDS and RDS names its
 * CDS and LDS named, so istiod has them; a stream holding many others is broken or hostile, and in
 * group mode they would be resubscribed on the group's stream for every member (group poisoning).
 */
export interface AbsentNameLimits {
  perVm: number;
  perGroup: number;
  /** How long after being asked for (and the upstream answering) a name missing from the cache counts as absent. */
  graceMs: number;
  /** VMs ended for holding absent names, across groups (for the metrics). */
  stats: { vmsEnded: number };
}

export const DEFAULT_ABSENT_NAME_LIMITS: Omit<AbsentNameLimits, 'stats'> = { perVm: 1000, perGroup: 10_000, graceMs: 10_000 };

/** Reference counts of what the group's members subscribe to, per type. */
class TypeInterest {
  wildcard = 0;
  upstreamWildcard = false;
  readonly names = new Map<string, number>();
  /** When each name was first asked for (performance.now()), to judge names that never arrive. */
  readonly askedAt = new Map<string, number>();
  /** Names the upstream was asked for and did not have after the grace period. */
  readonly absent = new Set<string>();
  /** Names whose last subscriber left in this tick: forgotten unless someone subscribes again first. */
  readonly leaving = new Set<string>();
}

/**
 * A group's life: serving its members; lingering with none (its cache kept for VMs that come back
 * within `groupLingerSeconds`); closed.
 */
export type GroupPhase = 'serving' | 'lingering' | 'closed';

/**
 * VMs that share one upstream stream (one in stream mode). The group is their view: one cache, one
 * memo of serialized responses, and the union of their subscriptions as the upstream subscription.
 */
export class UpstreamGroup implements XdsView {
  readonly cache = new ResourceCache();
  /** Member streams, with the way to end each and what each subscribes to. */
  readonly members = new Map<string, StreamIdentity>();
  /** Group mode: what members lend the upstream stream to authenticate it. */
  readonly credentials = new GroupCredentials();
  readonly createdAt = new Date().toISOString();
  private readonly interest = new Map<string, TypeInterest>();
  private current: GroupPhase = 'serving';
  private lingerTimer: NodeJS.Timeout | undefined;
  private readonly closeHooks: Array<() => void> = [];
  private forgetScheduled = false;
  private forgetTimer: NodeJS.Timeout | undefined;
  private auditTimer: NodeJS.Timeout | undefined;
  private firstResponseTimer: NodeJS.Timeout | undefined;
  upstream!: UpstreamAdsStream;
  /** The member whose node the upstream stream speaks as (istiod computes the group's config for it). */
  opener: ProxyNode | undefined;
  /** Per downstream network, when the group's upstream view is shared across networks. */
  readonly networkViews = new Map<string, XdsView & { translations: number; close(): void }>();

  constructor(
    readonly key: string,
    readonly mode: 'group' | 'stream',
    readonly fields: { [field: string]: JsonValue },
    readonly memo: ResponseMemo,
    private readonly absentLimits: AbsentNameLimits = { ...DEFAULT_ABSENT_NAME_LIMITS, stats: { vmsEnded: 0 } },
    /** How long members of a group with nothing cached wait for the upstream's first answer. */
    private readonly firstResponseTimeoutMs = DEFAULT_FIRST_RESPONSE_TIMEOUT_MS,
  ) {
    this.cache.onChange((change) => this.memo.invalidate(change.typeUrl));
  }

  get phase(): GroupPhase {
    return this.current;
  }

  /**
   * The one place the group's phase moves. Lingering ends after `lingerMs` with `onIdle` unless a
   * member joins first; nothing leaves `closed`.
   */
  private enter(phase: GroupPhase, linger?: { ms: number; onIdle: () => void }): void {
    if (this.current === 'closed') return;
    this.current = phase;
    clearTimeout(this.lingerTimer);
    this.lingerTimer = linger ? setTimeout(() => this.lingerEnded(linger), linger.ms) : undefined;
  }

  /**
   * A group-mode cache is what its VMs get while the upstream cannot resend it (a cut edge link,
   * istiod away): it lingers on until the upstream is back, then goes.
   */
  private lingerEnded(linger: { ms: number; onIdle: () => void }): void {
    if (this.mode === 'group' && !this.upstream.live && !this.isEmpty()) {
      this.enter('lingering', { ms: Math.max(linger.ms, FORGET_RETRY_MS), onIdle: linger.onIdle });
      return;
    }
    linger.onIdle();
  }

  /** Starts the upstream stream; separate from construction so the cache exists first. */
  connect(upstream: UpstreamAdsStream): void {
    this.upstream = upstream;
    upstream.start();
  }

  changeInterest(typeUrl: string, change: InterestChange, leaving = false): void {
    let interest = this.interest.get(typeUrl);
    if (!interest) {
      interest = new TypeInterest();
      this.interest.set(typeUrl, interest);
    }
    interest.wildcard += change.wildcard;
    let namesChanged = false;
    let askedNew = false;
    for (const name of change.added) {
      const count = interest.names.get(name) ?? 0;
      interest.names.set(name, count + 1);
      if (count === 0) {
        namesChanged = true;
        if (!this.cache.get(typeUrl, name)) {
          interest.askedAt.set(name, performance.now());
          askedNew = true;
        }
      }
    }
    if (askedNew) this.scheduleAudit(this.absentLimits.graceMs);
    const dropped: string[] = [];
    for (const name of change.removed) {
      const count = interest.names.get(name) ?? 0;
      if (count <= 1) {
        interest.names.delete(name);
        interest.askedAt.delete(name);
        interest.absent.delete(name);
        dropped.push(name);
        namesChanged = true;
      } else interest.names.set(name, count - 1);
    }
    // A wildcard stays subscribed upstream for the group's life: unsubscribing would leave the cache
    // unable to learn of deletions, and the next member would be served a stale set.
    const wildcardBefore = interest.upstreamWildcard;
    interest.upstreamWildcard ||= interest.wildcard > 0;
    // A named resource nobody subscribes to is dropped: nobody holds it, and the upstream would not
    // tell us if it were deleted while unsubscribed. Only at the end of the tick, as the upstream
    // unsubscribe is sent then: VMs reconnecting together leave and rejoin within one tick, and the
    // upstream, never told of it, would not send the resources again.
    for (const name of dropped) interest.leaving.add(name);
    if (dropped.length > 0) this.scheduleForget();
    // A stream-mode group's only VM is leaving: its upstream stream lingers still subscribed, so a
    // VM that reconnects within the linger window is sent only what changed, by istiod and by us.
    // What it no longer asks for on its return is unsubscribed then.
    const keepUpstream = leaving && this.mode === 'stream';
    if (!keepUpstream && (namesChanged || wildcardBefore !== interest.upstreamWildcard)) {
      this.upstream.setDesired(typeUrl, { wildcard: interest.upstreamWildcard, names: new Set(interest.names.keys()) });
    }
  }

  private scheduleForget(): void {
    if (this.forgetScheduled) return;
    this.forgetScheduled = true;
    setImmediate(() => this.forgetUnwanted());
  }

  private forgetUnwanted(): void {
    this.forgetScheduled = false;
    if (this.phase === 'closed') return;
    // While the upstream is away it could not resend a name asked for again, and the cache is all
    // the VMs have (a degraded restart, a cut edge link): nothing named is dropped until it is back.
    // A lingering group keeps everything for the VMs that come back (and a link may be cut before
    // keepalives notice).
    if (!this.upstream.live || this.phase === 'lingering') {
      this.forgetScheduled = true;
      this.forgetTimer = setTimeout(() => this.forgetUnwanted(), FORGET_RETRY_MS);
      this.forgetTimer.unref();
      return;
    }
    for (const [typeUrl, interest] of this.interest) {
      const gone = [...interest.leaving].filter((name) => !interest.names.has(name));
      interest.leaving.clear();
      if (!interest.upstreamWildcard && gone.length > 0) this.cache.forget(typeUrl, gone);
    }
  }

  private scheduleAudit(delayMs: number): void {
    if (this.auditTimer || this.phase === 'closed') return;
    this.auditTimer = setTimeout(() => {
      this.auditTimer = undefined;
      this.auditAbsentNames();
    }, delayMs);
    this.auditTimer.unref();
  }

  /**
   * Judges the names asked for that have not arrived: once the upstream has answered for the grace
   * period and still not sent one, it is absent. A VM holding more absent names than a VM may, or
   * the most of them while the group holds more than a group may, is ended with the reason; the
   * group keeps serving the rest, and the names leave its upstream subscription with that VM.
   */
  private auditAbsentNames(): void {
    if (this.phase === 'closed') return;
    const { graceMs } = this.absentLimits;
    const answeredAt = this.upstream.answeredAt;
    if (answeredAt === undefined) {
      this.scheduleAudit(graceMs);
      return;
    }
    const now = performance.now();
    let nextDue = Infinity;
    for (const [typeUrl, interest] of this.interest) {
      for (const [name, askedAt] of interest.askedAt) {
        if (this.cache.get(typeUrl, name)) {
          interest.askedAt.delete(name);
          interest.absent.delete(name);
          continue;
        }
        const due = Math.max(askedAt, answeredAt) + graceMs;
        if (due <= now) interest.absent.add(name);
        else nextDue = Math.min(nextDue, due);
      }
    }
    this.endMembersOverAbsentLimits();
    // A little after the first name comes due, so names asked for together are judged together.
    if (nextDue !== Infinity) this.scheduleAudit(Math.max(10, nextDue - now) + AUDIT_BATCH_MS);
  }

  private endMembersOverAbsentLimits(): void {
    const { perVm, perGroup } = this.absentLimits;
    let groupAbsent = 0;
    for (const interest of this.interest.values()) groupAbsent += interest.absent.size;
    if (groupAbsent === 0) return;
    const holders = this.membersByAbsentNames();
    for (const { member, absent } of holders) {
      if (absent <= perVm && groupAbsent <= perGroup) break;
      if (absent === 0) break;
      groupAbsent -= absent;
      this.endForAbsentNames(member, absent > perVm
        ? `this VM subscribes ${absent} names the upstream does not have, over the limit of ${perVm} per VM`
        : `this VM's group holds more than ${perGroup} names the upstream does not have, and this VM asked for the most (${absent})`);
    }
  }

  /** Members with the absent names each holds, most first. */
  private membersByAbsentNames(): Array<{ member: StreamIdentity; absent: number }> {
    const out: Array<{ member: StreamIdentity; absent: number }> = [];
    for (const member of this.members.values()) {
      let absent = 0;
      for (const [typeUrl, interest] of this.interest) {
        if (interest.absent.size === 0) continue;
        for (const name of member.subscribedNames(typeUrl)) if (interest.absent.has(name)) absent++;
      }
      if (absent > 0) out.push({ member, absent });
    }
    return out.sort((a, b) => b.absent - a.absent);
  }

  private endForAbsentNames(member: StreamIdentity, why: string): void {
    this.absentLimits.stats.vmsEnded++;
    member.refuse(new RelayError('MR_TOO_MANY_NAMES', why));
  }

  /** Stream mode forwards the one VM's NACKs and health to istiod; group mode keeps them here. */
  report(event: ProxyReport): void {
    if (this.mode !== 'stream') return;
    if (event.kind === 'nack') this.upstream.forwardNack(event.typeUrl, event.error);
    else this.upstream.forwardHealth(event.error);
  }

  subscriptionSummary(): Record<string, { wildcard: boolean; names: number; resources: number }> {
    const out: Record<string, { wildcard: boolean; names: number; resources: number }> = {};
    for (const [typeUrl, interest] of this.interest) {
      out[typeUrl] = { wildcard: interest.upstreamWildcard, names: interest.names.size, resources: this.cache.all(typeUrl).size };
    }
    return out;
  }

  addMember(stream: StreamIdentity): void {
    if (this.phase === 'lingering') this.enter('serving');
    this.members.set(stream.streamId, stream);
    if (this.mode !== 'group') return;
    this.credentials.add(stream.streamId, memberCredentials(stream));
    const refusal = this.upstream?.stats.lastRefusal;
    // A VM that joins a group istiod refuses, with nothing cached for it and no new credential to
    // try, is told so at once instead of waiting on an empty stream.
    if (refusal && !this.upstream.isOpen && this.isEmpty() && !this.credentials.offersUsable(stream.streamId)) {
      setImmediate(() => stream.refuse(refusedError(refusal)));
      return;
    }
    this.upstream?.credentialAdded();
    if (!this.hasBeenAnswered()) this.awaitFirstResponse();
  }

  /** Whether the group has anything to serve: cached config, or an upstream that answered. */
  private hasBeenAnswered(): boolean {
    return !this.isEmpty() || this.upstream?.answeredAt !== undefined;
  }

  /**
   * A group with nothing cached whose upstream does not answer (unreachable, or a link that carries
   * no data) ends its VMs UNAVAILABLE after the timeout: Envoy backs off and retries, perhaps
   * reaching another replica, instead of holding an open stream with nothing on it.
   */
  private awaitFirstResponse(): void {
    if (this.firstResponseTimer) return;
    this.firstResponseTimer = setTimeout(() => {
      this.firstResponseTimer = undefined;
      if (this.phase === 'closed' || this.hasBeenAnswered()) return;
      const why = `the upstream (${this.upstream.stats.state}${this.upstream.stats.lastError ? `: ${this.upstream.stats.lastError}` : ''}) has not answered for this VM's group in ${this.firstResponseTimeoutMs / 1000} s, and nothing is cached for it`;
      for (const member of [...this.members.values()]) member.refuse(new RelayError('MR_UPSTREAM_UNAVAILABLE', why));
    }, this.firstResponseTimeoutMs);
    this.firstResponseTimer.unref();
  }

  /**
   * istiod refused the upstream stream: VMs the group has nothing cached for get istiod's status
   * (Envoy backs off and retries); VMs already served keep their config from the cache.
   */
  upstreamRefused(refusal: UpstreamRefusal): void {
    if (!CREDENTIAL_REFUSALS.has(refusal.code)) {
      // A request refused for what it asks: the member that asked for the most names the upstream
      // does not have is the likely cause; it goes, so the group's next stream can succeed.
      const [culprit] = this.membersByAbsentNames();
      if (culprit) {
        this.endForAbsentNames(culprit.member, `the upstream refused this VM's group's subscription (${refusal.message}), and this VM asked for the most names the upstream does not have (${culprit.absent})`);
        return;
      }
    }
    // istiod's request rate limit passes; VMs wait for the stream's retry instead of being told to back off.
    if (!this.isEmpty() || refusal.code === GrpcStatus.RESOURCE_EXHAUSTED) return;
    for (const member of [...this.members.values()]) member.refuse(refusedError(refusal));
  }

  private isEmpty(): boolean {
    return this.cache.size() === 0;
  }

  /** Removes a member; when none is left, `onIdle` runs after the linger period unless one joins. */
  removeMember(streamId: string, lingerMs: number, onIdle: () => void): void {
    this.members.delete(streamId);
    this.credentials.remove(streamId);
    if (this.members.size === 0) this.enter('lingering', { ms: lingerMs, onIdle });
  }

  /** Runs when the group closes (e.g. stops renewing the relay's token for it). */
  onClose(hook: () => void): void {
    this.closeHooks.push(hook);
  }

  close(): void {
    this.enter('closed');
    for (const hook of this.closeHooks.splice(0)) hook();
    clearTimeout(this.forgetTimer);
    clearTimeout(this.auditTimer);
    clearTimeout(this.firstResponseTimer);
    for (const view of this.networkViews.values()) view.close();
    this.memo.clear();
    this.upstream.close();
  }
}

function refusedError(refusal: UpstreamRefusal): RelayError {
  return new UpstreamStatusError(refusal.code as GrpcStatus, `istiod refused this VM's group: ${refusal.message}`);
}
