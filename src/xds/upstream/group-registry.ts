import { createHash } from 'node:crypto';
import { RelayError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { MemoLimit, NonceSource, ResponseMemo } from '../cache/response-memo.js';
import type { ResourceUpdate } from '../cache/resource-cache.js';
import type { StreamIdentity, ViewAttachment, ViewProvider, XdsView } from '../view.js';
import type { NodeMessage, XdsProtocol } from '../protocol/envelopes.js';
import { metadataString, type ProxyNode } from '../protocol/node.js';
import { aggregationKey, type AggregationRules } from './aggregation-key.js';
import type { BackoffPolicy } from '../../transport/backoff.js';
import type { ConnectionPool } from './connection-pool.js';
import { UpstreamAdsStream } from './upstream-ads-stream.js';
import { memberCredentials } from './group-credentials.js';
import { GroupVerifier } from './group-verifier.js';
import { DEFAULT_ABSENT_NAME_LIMITS, UpstreamGroup, type AbsentNameLimits } from './upstream-group.js';
import { AdmissionControl } from '../../limits/admission-control.js';

export type MultiplexMode = 'group' | 'stream';

export interface GroupRegistryOptions {
  pool: ConnectionPool;
  protocol: XdsProtocol;
  defaultMode: MultiplexMode;
  /** Per-namespace override of the mode (docs/ISTIO-FACTS.md: chosen per namespace by config). */
  modeByNamespace: Record<string, MultiplexMode>;
  rules: AggregationRules;
  backoff: BackoffPolicy;
  /** How long an empty group keeps its upstream stream and cache, for VMs that reconnect. */
  lingerMs: number;
  /** Stream mode: how long a VM's upstream stream waits for the VM to come back. */
  streamLingerMs: number;
  /** How long members of a group with nothing cached wait for the upstream's first answer. */
  firstResponseTimeoutMs?: number;
  /**
   * Share one upstream view across downstream networks (docs/SPLIT-HORIZON.md): NETWORK leaves the
   * aggregation key, the upstream node declares the relay's own network, and the relay translates
   * EDS per downstream network itself. A mesh-layer plug-in, so xds/ does not depend on mesh/.
   */
  sharedNetworks?: {
    relayNetwork: string;
    viewFor(group: XdsView, network: string, memo: ResponseMemo): XdsView & { translations: number; close(): void };
  };
  /**
   * Group-mode groups at most: each is an upstream stream istiod computes for, so VMs with ever new
   * metadata (unique labels) would otherwise turn one relay into N streams on istiod.
   */
  maxGroups?: number;
  /** Serialized responses kept for reuse, across all groups. */
  responseMemoMb?: number;
  /** New groups per second and burst (0 = no limit). */
  groupCreation?: { ratePerSecond: number; burst: number };
  absentNames?: Omit<AbsentNameLimits, 'stats'>;
  /** The share of VMs joining a group whose own config is checked against the group's (docs/ADDRESS-BINDING.md). */
  verifyFraction?: number;
  /**
   * groupIdentity token-request: a token of a group's service account from the API server, so a
   * group authenticates toward istiod even when its members hold only certificates (a k8s/ plug-in).
   */
  groupTokens?: (namespace: string, serviceAccount: string) => Promise<{ token: string; expiresAt: number }>;
  /** Fills a new group-mode group's cache before its upstream stream starts (edge snapshots). */
  prepareCache?: (key: string, cache: UpstreamGroup['cache']) => void;
  /** Rewrites upstream resources as they enter a group's cache (a mesh-layer plug-in). */
  transformUpstream?: (typeUrl: string, update: ResourceUpdate) => ResourceUpdate;
  log: Logger;
}

/** Metadata a VM sent that stream mode forwards upstream so istiod sees the VM's own identity. */
const forwardedCallMetadata = ['authorization', 'clusterid'];

/**
 * Node metadata a group's upstream node does not carry: istiod would act on it for the one member
 * whose node opened the stream. AUTO_REGISTER_GROUP would have istiod register that member alone
 * (pilot/pkg/autoregistration/controller.go); in group mode the relay registers each VM itself.
 */
const memberOnlyMetadata = ['AUTO_REGISTER_GROUP'];
const DEFAULT_MEMO_MB = 128;
/** Isolated nodes remembered at most (the oldest is forgotten first). */
const MAX_ISOLATED = 10_000;
const STREAM_MEMO_SHARE = 1 / 16;

/**
 * Maps each VM stream to its upstream group: by aggregation key in group mode, one group per stream
 * in stream mode. Groups are created on first use and closed after lingering empty.
 */
export class GroupRegistry implements ViewProvider {
  private readonly groups = new Map<string, UpstreamGroup>();
  /** Group-mode streams and the key they joined under, so a change of key can move them. */
  private readonly members = new Map<string, { node: ProxyNode; stream: StreamIdentity; key: string; shared: boolean }>();
  private readonly nonces = new NonceSource();
  /** Serialized responses kept across all groups' memos. */
  private readonly memoLimit: MemoLimit;
  /**
   * Stream mode's apart, and small: each response there goes to one VM, so a kept frame only serves
   * that VM's resend (a NACK, a reconnect); an unbounded share would cost a response per VM.
   */
  private readonly streamMemoLimit: MemoLimit;
  /** Nodes verification found served differently from their group: each gets a group of its own. */
  private readonly isolated = new Set<string>();
  readonly verifier: GroupVerifier | undefined;
  /** VMs refused a new group, by reason (for the metrics). */
  readonly groupsRefused = { max_groups: 0, rate: 0 };
  private readonly groupCreation: AdmissionControl | undefined;
  /** Subscribed names no upstream has: per VM, per group; and the VMs ended for them. */
  readonly absentNames: AbsentNameLimits;
  /** VMs moved to another group since start (for the metrics). */
  moves = 0;
  /** What closed groups had received from the upstream (for the metrics' running total). */
  private closedGroupsBytes = 0;
  /** Refusals of upstream streams since start, by gRPC status code (for the metrics). */
  readonly refusals = new Map<number, number>();

  private readonly sharedViewRules: AggregationRules;

  constructor(private readonly options: GroupRegistryOptions) {
    this.memoLimit = new MemoLimit((options.responseMemoMb ?? DEFAULT_MEMO_MB) * 1024 * 1024);
    this.streamMemoLimit = new MemoLimit((options.responseMemoMb ?? DEFAULT_MEMO_MB) * 1024 * 1024 * STREAM_MEMO_SHARE);
    this.absentNames = { ...DEFAULT_ABSENT_NAME_LIMITS, ...options.absentNames, stats: { vmsEnded: 0 } };
    if (options.groupCreation) this.groupCreation = new AdmissionControl({ ...options.groupCreation, maxQueued: 0, maxWaitMs: 0 }, 'new group');
    this.sharedViewRules = { ...options.rules, perInstanceMetadata: [...options.rules.perInstanceMetadata, 'NETWORK'] };
    if (options.verifyFraction) {
      this.verifier = new GroupVerifier({
        pool: options.pool, protocol: options.protocol, backoff: options.backoff, fraction: options.verifyFraction, log: options.log.child({ component: 'verification' }),
      });
    }
  }

  private newMemo(mode: MultiplexMode = 'group'): ResponseMemo {
    return new ResponseMemo(this.nonces, mode === 'stream' ? this.streamMemoLimit : this.memoLimit);
  }

  attach(node: ProxyNode, stream: StreamIdentity): ViewAttachment {
    const mode = this.options.modeByNamespace[node.namespace] ?? this.options.defaultMode;
    const shared = mode === 'group' ? this.options.sharedNetworks : undefined;
    const aggregation = this.groupKey(node, !!shared);
    const key = mode === 'group' ? aggregation.key : this.streamKey(node, stream);
    let group = this.groups.get(key);
    if (!group) {
      if (mode === 'group' && this.groupModeGroups() >= (this.options.maxGroups ?? Infinity)) {
        this.groupsRefused.max_groups++;
        throw new RelayError('MR_OVER_LIMIT', `the relay already holds ${this.options.maxGroups} groups (maxGroups): a VM whose metadata matches no existing group is not given a new upstream stream`);
      }
      // Each new group is a stream istiod computes for: VMs arriving with ever new metadata are let
      // through at a bounded rate (they retry), so they cannot turn into a burst of streams on istiod.
      if (mode === 'group' && this.groupCreation && !this.groupCreation.tryAdmit()) {
        this.groupsRefused.rate++;
        throw new RelayError('MR_OVERLOADED', `new groups are being created faster than ${this.options.groupCreation!.ratePerSecond}/s (groupCreationRate); retry with backoff`);
      }
      group = this.createGroup(key, mode, node, aggregation.fields, stream);
    } else {
      group.addMember(stream);
    }
    if (mode === 'group') {
      this.members.set(stream.streamId, { node, stream, key, shared: !!shared });
      if (group.opener !== node) this.verify(group, node, stream);
    }
    const joined = group;
    let view: XdsView = joined;
    if (shared) {
      const network = typeof node.metadata.NETWORK === 'string' ? node.metadata.NETWORK : '';
      let networkView = joined.networkViews.get(network);
      if (!networkView) {
        networkView = shared.viewFor(joined, network, this.newMemo());
        joined.networkViews.set(network, networkView);
      }
      view = networkView;
    }
    return {
      view,
      key,
      mode,
      release: () => {
        this.members.delete(stream.streamId);
        joined.removeMember(stream.streamId, mode === 'stream' ? this.options.streamLingerMs : this.options.lingerMs, () => this.closeGroup(joined));
      },
    };
  }

  /**
   * Re-keys every group-mode stream after the config bound to VM addresses changed: a VM whose key
   * is now another is told to reconnect (UNAVAILABLE), and comes back into its new group. Envoy
   * keeps its config while its ADS stream is down, so it loses nothing meanwhile.
   */
  rekey(): number {
    let moved = 0;
    for (const member of [...this.members.values()]) {
      if (this.groupKey(member.node, member.shared).key === member.key) continue;
      moved++;
      this.moves++;
      this.options.log.info({ node: member.node.id, from: member.key }, 'config bound to the VM\'s address changed; moving it to its new group');
      member.stream.refuse(new RelayError('MR_GROUP_CHANGED', 'the configuration bound to this VM\'s address changed: reconnect to be served by its new group'));
    }
    // istiod computes a group's config for the node its stream speaks as, address included: a group
    // whose opener's address now binds other config (the opener moved, or left and its address was
    // bound since) speaks again as a member that still belongs, or closes if none is left.
    for (const group of [...this.groups.values()]) {
      const opener = group.opener;
      if (group.mode !== 'group' || !opener || this.groupKey(opener, !!this.options.sharedNetworks).key === group.key) continue;
      const member = [...this.members.values()].find((candidate) => candidate.key === group.key);
      if (!member) {
        this.closeGroup(group);
        continue;
      }
      this.options.log.info({ group: group.key, node: member.node.id }, 'the group\'s upstream stream now speaks as another member');
      group.opener = member.node;
      group.upstream.reopenAs(this.upstreamNode(member.node, 'group'));
    }
    return moved;
  }

  /**
   * A stream-mode VM's own upstream stream, found again when it reconnects within the linger window:
   * keyed by its node (id and metadata: a restarted Envoy that says something else is someone else)
   * and by who it proved to be, or the credential it forwards. A second stream of the same node
   * while the first is still served gets a stream of its own.
   */
  private streamKey(node: ProxyNode, stream: StreamIdentity): string {
    const forwarded = forwardedCallMetadata.map((name) => stream.callMetadata[name] ?? '');
    const who = stream.caller ? [stream.caller.namespace, stream.caller.serviceAccount, stream.caller.relayedBy ?? ''] : forwarded;
    const fingerprint = createHash('sha256').update(JSON.stringify([node.raw, who])).digest('base64url').slice(0, 22);
    const key = `stream/${node.id}/${fingerprint}`;
    const lingering = this.groups.get(key);
    return lingering && lingering.members.size > 0 ? `${key}/${stream.streamId}` : key;
  }

  /** The node a group's upstream stream speaks as: the member's, less what istiod must not act on for it alone. */
  private upstreamNode(node: ProxyNode, mode: MultiplexMode): NodeMessage {
    const groupNode = mode === 'group' ? withoutMetadata(node.raw, memberOnlyMetadata) : node.raw;
    const shared = mode === 'group' ? this.options.sharedNetworks : undefined;
    return shared ? withNetwork(groupNode, shared.relayNetwork) : groupNode;
  }

  /** The aggregation key, apart for a node verification found served differently from its group. */
  private groupKey(node: ProxyNode, sharedView: boolean): ReturnType<typeof aggregationKey> {
    const aggregation = aggregationKey(node, this.rulesFor(sharedView));
    if (!this.isolated.has(node.id)) return aggregation;
    return { key: `${aggregation.key}/isolated/${node.id}`, fields: { ...aggregation.fields, '@isolated': node.id } };
  }

  /** Checks a joining member's own config against its group's; one that differs is moved to a group of its own. */
  private verify(group: UpstreamGroup, node: ProxyNode, stream: StreamIdentity): void {
    if (!this.verifier || this.isolated.has(node.id)) return;
    const credential = memberCredentials(stream)[0];
    this.verifier.maybeVerify(group, { nodeId: node.id, upstreamNode: this.upstreamNode(node, 'group'), metadata: credential?.metadata ?? {} }, () => {
      if (this.isolated.size >= MAX_ISOLATED) this.isolated.delete(this.isolated.values().next().value!);
      this.isolated.add(node.id);
      if (!this.members.has(stream.streamId)) return;
      this.moves++;
      stream.refuse(new RelayError('MR_GROUP_CHANGED', 'istiod configures this VM differently from its group: reconnect to be served by a group of its own'));
    });
  }

  /** With a shared upstream view the network is the relay's own, so it leaves the key. */
  private rulesFor(sharedView: boolean): AggregationRules {
    return sharedView ? this.sharedViewRules : this.options.rules;
  }

  private groupModeGroups(): number {
    let count = 0;
    for (const group of this.groups.values()) if (group.mode === 'group') count++;
    return count;
  }

  /** Bytes of serialized responses kept for reuse, both modes. */
  memoBytes(): number {
    return this.memoLimit.bytes + this.streamMemoLimit.bytes;
  }

  /** Bytes received from the upstream since start, by open and closed groups. */
  upstreamBytesReceived(): number {
    let total = this.closedGroupsBytes;
    for (const group of this.groups.values()) total += group.upstream.stats.bytesReceived;
    return total;
  }

  list(): UpstreamGroup[] {
    return [...this.groups.values()];
  }

  /** Streams open to the upstream right now (one per group that is streaming). */
  upstreamStreams(): number {
    return this.list().filter((group) => group.upstream.isOpen).length;
  }

  /** True once any group has received config from the upstream. */
  hasReceivedConfig(): boolean {
    return this.list().some((group) => group.upstream.stats.responses > 0);
  }

  close(): void {
    this.verifier?.close();
    for (const group of this.groups.values()) group.close();
    this.groups.clear();
  }

  /** A new group with its first member (whose credential the first upstream stream opens with). */
  private createGroup(key: string, mode: MultiplexMode, opener: ProxyNode, fields: UpstreamGroup['fields'], stream: StreamIdentity): UpstreamGroup {
    const group = new UpstreamGroup(key, mode, fields, this.newMemo(mode), this.absentNames, this.options.firstResponseTimeoutMs);
    group.opener = opener;
    const upstreamNode = this.upstreamNode(opener, mode);
    if (mode === 'group') this.options.prepareCache?.(key, group.cache);
    const metadata: Record<string, string> = {};
    if (mode === 'stream') {
      for (const name of forwardedCallMetadata) {
        const value = stream.callMetadata[name];
        if (value) metadata[name] = value;
      }
      // A VM that proved itself with its workload certificate is vouched for to istiod (its XFCC
      // authenticator, from TRUSTED_GATEWAY_CIDR).
      if (stream.caller?.forwardedClientCert) metadata['x-forwarded-client-cert'] = stream.caller.forwardedClientCert;
    } else if (this.options.groupTokens) {
      // Group mode: each upstream stream opens with a current member's credential (docs/SECURITY.md),
      // or the relay's own token for the group once it comes.
      group.credentials.expectRelayToken();
    }
    group.addMember(stream);
    group.connect(new UpstreamAdsStream({
      pool: this.options.pool,
      protocol: this.options.protocol,
      node: upstreamNode,
      cache: group.cache,
      metadata,
      ...(mode === 'group' ? { credentials: group.credentials } : {}),
      onRefused: (refusal) => {
        this.refusals.set(refusal.code, (this.refusals.get(refusal.code) ?? 0) + 1);
        group.upstreamRefused(refusal);
      },
      backoff: this.options.backoff,
      ...(this.options.transformUpstream ? { transform: this.options.transformUpstream } : {}),
      log: this.options.log.child({ group: key }),
    }));
    this.groups.set(key, group);
    this.options.log.info({ group: key, mode, node: opener.id }, 'upstream group created');
    if (mode === 'group') this.obtainGroupToken(group, opener);
    return group;
  }

  /** Asks for a token of the group's service account, and again at 80 % of its life, until the group closes. */
  private obtainGroupToken(group: UpstreamGroup, node: ProxyNode): void {
    const issue = this.options.groupTokens;
    if (!issue) return;
    const { namespace } = node;
    const serviceAccount = metadataString(node, 'SERVICE_ACCOUNT') || 'default';
    const clusterId = metadataString(node, 'CLUSTER_ID') || 'Kubernetes';
    let timer: NodeJS.Timeout | undefined;
    let closed = false;
    group.onClose(() => { closed = true; clearTimeout(timer); });
    const obtain = () => {
      issue(namespace, serviceAccount).then(({ token, expiresAt }) => {
        if (closed) return;
        group.credentials.setRelayToken({ kind: 'relay-token', metadata: { authorization: `Bearer ${token}`, clusterid: clusterId }, expiresAt });
        group.upstream.credentialAdded();
        timer = setTimeout(obtain, Math.max(1000, (expiresAt - Date.now()) * 0.8));
        timer.unref();
      }, (error: unknown) => {
        if (closed) return;
        this.options.log.warn({ group: group.key, err: (error as Error).message }, 'no token for the group\'s service account (TokenRequest); retrying');
        group.credentials.setRelayToken(undefined);
        group.upstream.credentialAdded();
        timer = setTimeout(obtain, 10_000);
        timer.unref();
      });
    };
    obtain();
  }

  private closeGroup(group: UpstreamGroup): void {
    if (this.groups.get(group.key) !== group) return;
    this.groups.delete(group.key);
    this.closedGroupsBytes += group.upstream.stats.bytesReceived;
    group.close();
    this.options.log.info({ group: group.key }, 'upstream group closed');
  }
}

function withoutMetadata(node: NodeMessage, keys: string[]): NodeMessage {
  const fields = node.metadata?.fields;
  if (!fields || !keys.some((key) => key in fields)) return node;
  const kept = Object.fromEntries(Object.entries(fields).filter(([key]) => !keys.includes(key)));
  return { ...node, metadata: { ...node.metadata, fields: kept } };
}

/** The node with metadata NETWORK replaced: istiod then renders endpoints as seen from there. */
function withNetwork(node: NodeMessage, network: string): NodeMessage {
  const fields = { ...(node.metadata?.fields ?? {}), NETWORK: { stringValue: network } };
  return { ...node, metadata: { ...node.metadata, fields } };
}
