import { BlockList, isIP } from 'node:net';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { GrpcStatus, RelayError } from '../errors.js';
import type { Logger } from '../log.js';
import type { NetworkGateway } from './split-horizon.js';

/** Istio's meshNetworks (the `meshNetworks` key of the istio ConfigMap, or a file of that shape). */
const meshNetworksSchema = z.object({
  networks: z.record(z.string().min(1), z.object({
    endpoints: z.array(z.union([
      z.object({ fromRegistry: z.string().min(1) }).strict(),
      z.object({ fromCidr: z.string().min(1) }).strict(),
    ])).default([]),
    gateways: z.array(z.union([
      z.object({ address: z.string().min(1), port: z.number().int().min(1).max(65535), locality: z.string().optional() }).strict(),
      z.object({ registryServiceName: z.string().min(1), port: z.number().int().min(1).max(65535), locality: z.string().optional() }).strict(),
    ])).default([]),
  })).default({}),
}).strict();

export type MeshNetworks = z.infer<typeof meshNetworksSchema>;

export function parseMeshNetworks(text: string, source: string): MeshNetworks {
  let document: unknown;
  try {
    document = parseYaml(text) ?? {};
  } catch (error) {
    throw new RelayError('MR_BAD_CONFIG', GrpcStatus.INVALID_ARGUMENT, `${source}: not valid YAML: ${(error as Error).message}`);
  }
  const parsed = meshNetworksSchema.safeParse(document);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new RelayError('MR_BAD_CONFIG', GrpcStatus.INVALID_ARGUMENT, `${source}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  for (const [network, spec] of Object.entries(parsed.data.networks)) {
    for (const entry of spec.endpoints) if ('fromCidr' in entry) cidr(entry.fromCidr, `${source}: networks.${network}`);
  }
  return parsed.data;
}

function cidr(text: string, where: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } {
  const [address, prefixText] = text.split('/');
  const family = isIP(address ?? '');
  const prefix = Number(prefixText);
  if (!family || !Number.isInteger(prefix) || prefix < 0 || prefix > (family === 4 ? 32 : 128)) {
    throw new RelayError('MR_BAD_CONFIG', GrpcStatus.INVALID_ARGUMENT, `${where}: fromCidr "${text}" is not a CIDR`);
  }
  return { address: address!, prefix, family: family === 4 ? 'ipv4' : 'ipv6' };
}

/** One source's view of the networks; the topology merges them. */
export interface TopologySource {
  name: string;
  networks: MeshNetworks;
  /** Cluster of a gateway, by `network|address|port`, where the source knows it. */
  clusters?: Map<string, string>;
}

export interface GatewayView extends NetworkGateway {
  source: string;
}

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
            gateways.push({ network, clusterId, address: gateway.address, port: gateway.port, source });
          }
        }
      }
    }
    this.registryNetwork = registryNetwork;
    this.cidrs = cidrs;
    this.resolvedGateways = gateways;
    this.generationCounter++;
    for (const listener of this.listeners) listener();
  }
}

/**
 * Static `--gateways network[/cluster]=address:port` flags. The optional cluster is what a gateway
 * discovered from a cluster's Service carries (meshNetworks address gateways have none).
 */
export function staticGateways(specs: string[]): TopologySource['networks'] & { clusters: Map<string, string> } {
  const networks: MeshNetworks['networks'] = {};
  const clusters = new Map<string, string>();
  for (const spec of specs) {
    const match = /^([^=/]+)(?:\/([^=]+))?=(\[[^\]]+\]|[^:]+):(\d+)$/.exec(spec.trim());
    const port = match ? Number(match[4]) : NaN;
    if (!match || !(port >= 1 && port <= 65535)) {
      throw new RelayError('MR_BAD_CONFIG', GrpcStatus.INVALID_ARGUMENT, `invalid gateways: "${spec}" is not network[/cluster]=address:port`);
    }
    const address = match[3]!.replace(/^\[|\]$/g, '');
    const network = (networks[match[1]!] ??= { endpoints: [], gateways: [] });
    network.gateways.push({ address, port });
    if (match[2]) clusters.set(`${match[1]}|${address}|${port}`, match[2]);
  }
  return { networks, clusters };
}

/**
 * A meshNetworks file, reloaded when it changes. A broken edit is logged and ignored: the last
 * good topology stays in force.
 */
export class MeshNetworksFile {
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly file: string, private readonly topology: NetworkTopology, private readonly log: Logger) {
    topology.set({ name: `file:${file}`, networks: this.read() });
  }

  /** Watches the directory: editors and ConfigMap mounts replace the file rather than write it. */
  start(): void {
    const name = path.basename(this.file);
    this.watcher = watch(path.dirname(this.file), (_event, changed) => {
      if (changed !== null && changed !== name && !changed.startsWith('..')) return;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.reload(), 200);
    });
    this.watcher.on('error', (error) => this.log.warn({ err: error.message, file: this.file }, 'meshNetworks watch failed'));
  }

  reload(): void {
    try {
      this.topology.set({ name: `file:${this.file}`, networks: this.read() });
      this.log.info({ file: this.file }, 'meshNetworks reloaded');
    } catch (error) {
      this.log.error({ err: (error as Error).message, file: this.file }, 'meshNetworks file changed but is not usable; keeping the previous topology');
    }
  }

  close(): void {
    clearTimeout(this.timer);
    this.watcher?.close();
  }

  private read(): MeshNetworks {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (error) {
      throw new RelayError('MR_BAD_CONFIG', GrpcStatus.INVALID_ARGUMENT, `cannot read meshNetworks file ${this.file}: ${(error as Error).message}`);
    }
    return parseMeshNetworks(text, this.file);
  }
}
