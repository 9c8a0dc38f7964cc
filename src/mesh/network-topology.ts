import { Resolver } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { cidr, type MeshNetworks } from './mesh-networks.js';
import type { NetworkGateway } from './split-horizon.js';

/** One source's view of the networks; the topology merges them. */
export interface TopologySource {
  name: string;
  networks: MeshNetworks;
  /** Cluster of a gateway, by `network|address|port`, where the source knows it. */
  clusters?: Map<string, string>;
}

export interface GatewayView extends NetworkGateway {
  source: string;
  /** The host name this address was resolved from, for gateways given by name. */
  hostname?: string;
}

/** The part of node:dns's Resolver the topology uses (injectable for tests). */
export interface GatewayResolver {
  resolve4(hostname: string, options: { ttl: true }): Promise<Array<{ address: string; ttl: number }>>;
  resolve6(hostname: string, options: { ttl: true }): Promise<Array<{ address: string; ttl: number }>>;
}

interface ResolvedName {
  addresses: string[];
  timer: NodeJS.Timeout | undefined;
}

/** istiod's bounds on how often a gateway host name is re-resolved. */
const MIN_GATEWAY_TTL_MS = 30_000;
const MAX_GATEWAY_TTL_MS = 3_600_000;

/**
 * The networks the relay believes in: which registry (cluster id) and which CIDRs belong to which
 * network, and each network's east-west gateways. Fed by a meshNetworks file, static flags and
 * (later) Kubernetes; gateways named by `registryServiceName` need the Kubernetes source to resolve.
 */
export class NetworkTopology {
  private readonly sources = new Map<string, TopologySource>();
  private registryNetwork = new Map<string, string>();
  private cidrs: Array<{ network: string; list: BlockList; text: string }> = [];
  private resolvedGateways: GatewayView[] = [];
  private readonly listeners = new Set<() => void>();
  private generationCounter = 0;
  private readonly names = new Map<string, ResolvedName>();
  private closed = false;

  constructor(private readonly resolver: GatewayResolver = new Resolver(), private readonly ttlBounds = { minMs: MIN_GATEWAY_TTL_MS, maxMs: MAX_GATEWAY_TTL_MS }) {}

  close(): void {
    this.closed = true;
    for (const entry of this.names.values()) clearTimeout(entry.timer);
  }

  set(source: TopologySource): void {
    this.sources.set(source.name, source);
    this.rebuild();
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Moves on every change, so derived data can tell it is stale. */
  get generation(): number {
    return this.generationCounter;
  }

  gateways(): readonly NetworkGateway[] {
    return this.resolvedGateways;
  }

  networkOfRegistry(clusterId: string): string | undefined {
    return this.registryNetwork.get(clusterId);
  }

  networkOfAddress(address: string): string | undefined {
    const family = isIP(address);
    if (!family) return undefined;
    return this.cidrs.find((entry) => entry.list.check(address, family === 4 ? 'ipv4' : 'ipv6'))?.network;
  }

  describe(): { networks: Record<string, { registries: string[]; cidrs: string[]; gateways: GatewayView[]; unresolvedGateways: Array<{ registryServiceName: string; port: number; source: string }> }> } {
    const networks: ReturnType<NetworkTopology['describe']>['networks'] = {};
    const entry = (name: string) => (networks[name] ??= { registries: [], cidrs: [], gateways: [], unresolvedGateways: [] });
    for (const [clusterId, network] of this.registryNetwork) entry(network).registries.push(clusterId);
    for (const { network, text } of this.cidrs) entry(network).cidrs.push(text);
    for (const gateway of this.resolvedGateways) entry(gateway.network).gateways.push(gateway);
    for (const [source, { networks: meshNetworks }] of this.sources) {
      for (const [network, spec] of Object.entries(meshNetworks.networks)) {
        for (const gateway of spec.gateways) {
          if ('registryServiceName' in gateway) entry(network).unresolvedGateways.push({ registryServiceName: gateway.registryServiceName, port: gateway.port, source });
        }
      }
    }
    return { networks };
  }

  private rebuild(): void {
    const hostnames = new Set<string>();
    const registryNetwork = new Map<string, string>();
    const cidrs: typeof this.cidrs = [];
    const gateways: GatewayView[] = [];
    for (const [source, { networks: meshNetworks, clusters }] of this.sources) {
      for (const [network, spec] of Object.entries(meshNetworks.networks)) {
        for (const endpoint of spec.endpoints) {
          if ('fromRegistry' in endpoint) registryNetwork.set(endpoint.fromRegistry, network);
          else {
            const parsed = cidr(endpoint.fromCidr, source);
            const list = new BlockList();
            list.addSubnet(parsed.address, parsed.prefix, parsed.family);
            cidrs.push({ network, list, text: endpoint.fromCidr });
          }
        }
        for (const gateway of spec.gateways) {
          // istiod gives meshNetworks address gateways no cluster; endpoints fall back to the network's gateways.
          if ('address' in gateway) {
            const clusterId = clusters?.get(`${network}|${gateway.address}|${gateway.port}`) ?? '';
            if (isIP(gateway.address)) {
              gateways.push({ network, clusterId, address: gateway.address, port: gateway.port, source });
              continue;
            }
            // A host name (e.g. a cloud load balancer's): one gateway per address it resolves to.
            hostnames.add(gateway.address);
            for (const address of this.names.get(gateway.address)?.addresses ?? []) {
              gateways.push({ network, clusterId, address, port: gateway.port, source, hostname: gateway.address });
            }
          }
        }
      }
    }
    this.registryNetwork = registryNetwork;
    this.cidrs = cidrs;
    this.resolvedGateways = gateways;
    this.generationCounter++;
    for (const [name, entry] of this.names) {
      if (hostnames.has(name)) continue;
      clearTimeout(entry.timer);
      this.names.delete(name);
    }
    for (const name of hostnames) if (!this.names.has(name)) void this.resolve(name);
    for (const listener of this.listeners) listener();
  }

  /**
   * Resolves a gateway host name (A and AAAA) and re-resolves it when its TTL runs out, within
   * istiod's bounds; a failed lookup keeps the previous addresses.
   */
  private async resolve(name: string): Promise<void> {
    const entry: ResolvedName = this.names.get(name) ?? { addresses: [], timer: undefined };
    this.names.set(name, entry);
    const answers = await Promise.allSettled([this.resolver.resolve4(name, { ttl: true }), this.resolver.resolve6(name, { ttl: true })]);
    if (this.closed || this.names.get(name) !== entry) return;
    const records = answers.flatMap((answer) => (answer.status === 'fulfilled' ? answer.value : []));
    const failed = answers.every((answer) => answer.status === 'rejected');
    const ttlMs = records.length > 0 ? Math.min(...records.map((record) => record.ttl * 1000)) : this.ttlBounds.minMs;
    entry.timer = setTimeout(() => void this.resolve(name), Math.min(this.ttlBounds.maxMs, Math.max(this.ttlBounds.minMs, ttlMs)));
    entry.timer.unref();
    const addresses = failed ? entry.addresses : records.map((record) => record.address).sort();
    if (addresses.join(',') === entry.addresses.join(',')) return;
    entry.addresses = addresses;
    this.rebuild();
  }
}
