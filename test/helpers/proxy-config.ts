import * as grpc from '@grpc/grpc-js';
import { ResourceDecoder } from '../../bench/xds/envoy-client.js';
import type { NodeMessage, XdsProtocol } from '../../src/xds/protocol/envelopes.js';
import { messageType } from '../../src/xds/protocol/protos.js';
import type { JsonValue } from '../../src/xds/protocol/struct.js';
import { shortTypeName, TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { canonicalJson } from '../../src/xds/upstream/aggregation-key.js';
import { AdsTestClient } from './ads-client.js';

/** typeUrl → resource name → the resource's bytes, as a proxy holds them. */
export type ProxyConfig = Map<string, Map<string, Buffer>>;

const WILDCARD_TYPES: readonly string[] = [TypeUrl.cluster, TypeUrl.listener];
/** Named types whose names come from the wildcard ones: EDS from EDS clusters, RDS from HCM listeners. */
const REFERENCED = new Map<string, string>([[TypeUrl.cluster, TypeUrl.endpoint], [TypeUrl.listener, TypeUrl.route]]);
const REFERENCED_TYPES = new Set(REFERENCED.values());

export interface ProxyOptions {
  /** The gRPC client to ride (e.g. TLS to istiod's 15012); the proxy closes it with itself. */
  client?: grpc.Client;
  /** Call metadata: `authorization`, `ClusterID`, … */
  headers?: Record<string, string>;
  /** Further wildcard types to subscribe to (e.g. NDS), as istio-agent does. */
  extraWildcardTypes?: string[];
  /**
   * Like Envoy, reopen the stream when the server ends it with UNAVAILABLE, keeping the config held
   * meanwhile and resuming with it (Delta: initial_resource_versions). Not with a caller's `client`
   * (use `connect`).
   */
  reconnect?: boolean;
  /** Makes the client each stream rides (a TLS one, say), the first and each reconnect's. */
  connect?: () => grpc.Client;
}

interface TypeHold {
  resources: Map<string, Buffer>;
  /** Names subscribed to (named types only). */
  subscribed: Set<string>;
  version: string;
  nonce: string;
  responses: number;
  /** Delta: the version of each resource held, for resuming on a new stream. */
  versions: Map<string, string>;
}

/**
 * A proxy that subscribes like Envoy on a VM: CDS and LDS wildcard, then EDS for the EDS clusters and
 * RDS for the route names the listeners reference, ACKing every response. It holds the complete
 * configuration, so two proxies (one straight to istiod, one through the relay) can be compared
 * resource by resource.
 */
export class ConfigProxy {
  private ads: AdsTestClient<XdsProtocol>;
  private closed = false;
  /** Streams reopened after the server ended one (with `reconnect`). */
  reconnects = 0;
  private readonly holds = new Map<string, TypeHold>();
  private readonly decoder = new ResourceDecoder();
  private lastResponseAt = Date.now();
  private nodeSent = false;
  readonly errors: string[] = [];

  constructor(private readonly target: string, readonly protocol: XdsProtocol, private readonly node: NodeMessage, private readonly options: ProxyOptions = {}) {
    this.ads = new AdsTestClient(target, protocol, options.client ?? options.connect?.(), options.headers ?? {}, true);
    void this.pump(this.ads);
    for (const typeUrl of [...WILDCARD_TYPES, ...(options.extraWildcardTypes ?? [])]) this.subscribe(typeUrl, []);
  }

  /** A new stream that resumes with everything held, as Envoy does after its ADS stream ended. */
  private resume(): void {
    this.reconnects++;
    this.ads = new AdsTestClient(this.target, this.protocol, this.options.connect?.(), this.options.headers ?? {}, true);
    this.nodeSent = false;
    void this.pump(this.ads);
    for (const [typeUrl, hold] of this.holds) {
      const wildcard = !REFERENCED_TYPES.has(typeUrl);
      if (this.protocol === 'sotw') {
        this.ads.send({ ...this.firstNode(), type_url: typeUrl, resource_names: wildcard ? [] : [...hold.subscribed], version_info: hold.version });
      } else {
        this.ads.send({
          ...this.firstNode(), type_url: typeUrl, resource_names_subscribe: wildcard ? [] : [...hold.subscribed],
          initial_resource_versions: Object.fromEntries(hold.versions),
        });
      }
    }
  }

  /** The stream's end, if it ended. */
  get status(): Promise<grpc.StatusObject> {
    return this.ads.status;
  }

  /** Responses received per type. */
  responses(typeUrl: string): number {
    return this.holds.get(typeUrl)?.responses ?? 0;
  }

  /** What the proxy holds now. */
  config(): ProxyConfig {
    const out: ProxyConfig = new Map();
    for (const [typeUrl, hold] of this.holds) {
      if (hold.responses > 0) out.set(typeUrl, new Map([...hold.resources].sort(([a], [b]) => a.localeCompare(b))));
    }
    return out;
  }

  /**
   * Waits until every referenced name has arrived and nothing has come for `quietMs`, then returns
   * the configuration. Rejects with what is missing after `timeoutMs`.
   */
  async settled(quietMs = 1500, timeoutMs = 30_000): Promise<ProxyConfig> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const missing = this.missing();
      if (missing.length === 0 && Date.now() - this.lastResponseAt >= quietMs) return this.config();
      if (Date.now() > deadline) {
        throw new Error(`configuration did not settle within ${timeoutMs} ms; missing: ${missing.slice(0, 10).join(', ') || 'none'}; errors: ${this.errors.join('; ')}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** Waits until `accept` holds for the configuration (after settling). */
  async until(accept: (config: ProxyConfig) => boolean, timeoutMs = 30_000): Promise<ProxyConfig> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const config = await this.settled(500, Math.max(1000, deadline - Date.now()));
      if (accept(config)) return config;
      if (Date.now() > deadline) throw new Error(`configuration did not reach the expected state within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  close(): void {
    this.closed = true;
    this.ads.close();
  }

  private missing(): string[] {
    const missing: string[] = [];
    for (const typeUrl of WILDCARD_TYPES) if (!this.holds.get(typeUrl)?.responses) missing.push(`${shortTypeName(typeUrl)} (no response)`);
    for (const typeUrl of REFERENCED.values()) {
      const hold = this.holds.get(typeUrl);
      for (const name of hold?.subscribed ?? []) if (!hold!.resources.has(name)) missing.push(`${shortTypeName(typeUrl)} ${name}`);
    }
    return missing;
  }

  private hold(typeUrl: string): TypeHold {
    let hold = this.holds.get(typeUrl);
    if (!hold) {
      hold = { resources: new Map(), subscribed: new Set(), version: '', nonce: '', responses: 0, versions: new Map() };
      this.holds.set(typeUrl, hold);
    }
    return hold;
  }

  private firstNode(): { node?: NodeMessage } {
    if (this.nodeSent) return {};
    this.nodeSent = true;
    return { node: this.node };
  }

  private subscribe(typeUrl: string, names: string[], removed: string[] = []): void {
    const hold = this.hold(typeUrl);
    for (const name of names) hold.subscribed.add(name);
    for (const name of removed) {
      hold.subscribed.delete(name);
      hold.resources.delete(name);
      hold.versions.delete(name);
    }
    if (this.protocol === 'sotw') {
      this.ads.send({ ...this.firstNode(), type_url: typeUrl, resource_names: [...hold.subscribed], version_info: hold.version, response_nonce: hold.nonce });
    } else {
      this.ads.send({ ...this.firstNode(), type_url: typeUrl, resource_names_subscribe: names, resource_names_unsubscribe: removed });
    }
  }

  private async pump(ads: AdsTestClient<XdsProtocol>): Promise<void> {
    for (;;) {
      let response;
      try {
        response = await ads.next(3_600_000);
      } catch {
        const status = await ads.status;
        if (this.options.reconnect && !this.closed && ads === this.ads && status.code === grpc.status.UNAVAILABLE) setTimeout(() => { if (!this.closed) this.resume(); }, 100);
        return;
      }
      this.lastResponseAt = Date.now();
      const typeUrl = response.type_url;
      const hold = this.hold(typeUrl);
      hold.responses += 1;
      if ('version_info' in response) {
        // SotW: CDS and LDS carry the full set; named types only what changed.
        if (WILDCARD_TYPES.includes(typeUrl)) hold.resources.clear();
        for (const resource of response.resources) {
          const name = this.decoder.decode(typeUrl, resource.value).name || resource.type_url;
          if (this.wanted(typeUrl, name)) hold.resources.set(name, resource.value);
        }
        hold.version = response.version_info;
        hold.nonce = response.nonce;
        ads.send({ type_url: typeUrl, version_info: hold.version, response_nonce: hold.nonce, resource_names: [...hold.subscribed] });
      } else {
        for (const resource of response.resources) {
          if (!resource.resource || !this.wanted(typeUrl, resource.name)) continue;
          hold.resources.set(resource.name, resource.resource.value);
          hold.versions.set(resource.name, resource.version);
        }
        for (const name of response.removed_resources) {
          hold.resources.delete(name);
          hold.versions.delete(name);
        }
        ads.send({ type_url: typeUrl, response_nonce: response.nonce });
      }
      this.followReferences(typeUrl);
    }
  }

  /** Like Envoy, a proxy keeps named resources only while it subscribes to them (a response in flight may still carry one it dropped). */
  private wanted(typeUrl: string, name: string): boolean {
    return !REFERENCED_TYPES.has(typeUrl) || this.hold(typeUrl).subscribed.has(name);
  }

  private followReferences(typeUrl: string): void {
    const target = REFERENCED.get(typeUrl);
    if (!target) return;
    const wanted = new Set<string>();
    for (const value of this.hold(typeUrl).resources.values()) for (const name of this.decoder.decode(typeUrl, value).references) wanted.add(name);
    const current = this.hold(target).subscribed;
    const added = [...wanted].filter((name) => !current.has(name));
    const removed = [...current].filter((name) => !wanted.has(name));
    if (added.length > 0 || removed.length > 0) this.subscribe(target, added, removed);
  }
}

export interface ConfigDifference {
  type: string;
  name: string;
  problem: 'only direct' | 'only through the relay' | 'bytes differ' | 'content differs';
}

/**
 * Resource-by-resource comparison. `decodedTypes` are compared by decoded content (where the relay
 * translates on purpose, e.g. EDS in a shared upstream view); everything else must be byte-identical.
 */
export function compareConfigs(direct: ProxyConfig, relayed: ProxyConfig, decodedTypes: string[] = []): ConfigDifference[] {
  const differences: ConfigDifference[] = [];
  for (const typeUrl of new Set([...direct.keys(), ...relayed.keys()])) {
    const a = direct.get(typeUrl) ?? new Map<string, Buffer>();
    const b = relayed.get(typeUrl) ?? new Map<string, Buffer>();
    const type = shortTypeName(typeUrl);
    for (const [name, bytes] of a) {
      const other = b.get(name);
      if (!other) differences.push({ type, name, problem: 'only direct' });
      else if (!bytes.equals(other)) {
        if (!decodedTypes.includes(typeUrl)) differences.push({ type, name, problem: 'bytes differ' });
        else if (decodedJson(typeUrl, bytes) !== decodedJson(typeUrl, other)) differences.push({ type, name, problem: 'content differs' });
      }
    }
    for (const name of b.keys()) if (!a.has(name)) differences.push({ type, name, problem: 'only through the relay' });
  }
  return differences;
}

function decodedJson(typeUrl: string, bytes: Buffer): string {
  const type = messageType(typeUrl.slice(typeUrl.indexOf('/') + 1));
  // Map entries (Struct metadata) may be encoded in any order: compare with keys sorted.
  return canonicalJson(type.toObject(type.decode(bytes), { defaults: false, longs: String, enums: String, bytes: String }) as JsonValue);
}

/** Names per type, for assertions and messages. */
export function resourceNames(config: ProxyConfig, typeUrl: string): string[] {
  return [...(config.get(typeUrl)?.keys() ?? [])];
}

/** Counts per type, e.g. `CDS 12, EDS 9, LDS 6, RDS 4`. */
export function summarize(config: ProxyConfig): string {
  return [...config].map(([typeUrl, resources]) => `${shortTypeName(typeUrl)} ${resources.size}`).join(', ');
}
