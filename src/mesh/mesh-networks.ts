import { isIP } from 'node:net';
import { z } from 'zod';
import { parseYamlDocument } from '../config/yaml-document.js';
import { RelayError } from '../errors.js';

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
  const parsed = parseYamlDocument(meshNetworksSchema, text, source);
  for (const [network, spec] of Object.entries(parsed.networks)) {
    for (const entry of spec.endpoints) if ('fromCidr' in entry) cidr(entry.fromCidr, `${source}: networks.${network}`);
  }
  return parsed;
}

/** A `fromCidr` as Istio writes it (address/prefix); a bad one is a config error naming where it was. */
export function cidr(text: string, where: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } {
  const [address, prefixText] = text.split('/');
  const family = isIP(address ?? '');
  const prefix = Number(prefixText);
  if (!family || !Number.isInteger(prefix) || prefix < 0 || prefix > (family === 4 ? 32 : 128)) {
    throw new RelayError('MR_BAD_CONFIG', `${where}: fromCidr "${text}" is not a CIDR`);
  }
  return { address: address!, prefix, family: family === 4 ? 'ipv4' : 'ipv6' };
}

/**
 * Static `--gateways network[/cluster]=address:port` flags. The optional cluster is what a gateway
 * discovered from a cluster's Service carries (meshNetworks address gateways have none).
 */
export function staticGateways(specs: string[]): MeshNetworks & { clusters: Map<string, string> } {
  const networks: MeshNetworks['networks'] = {};
  const clusters = new Map<string, string>();
  for (const spec of specs) {
    const match = /^([^=/]+)(?:\/([^=]+))?=(\[[^\]]+\]|[^:]+):(\d+)$/.exec(spec.trim());
    const port = match ? Number(match[4]) : NaN;
    if (!match || !(port >= 1 && port <= 65535)) {
      throw new RelayError('MR_BAD_CONFIG', `invalid gateways: "${spec}" is not network[/cluster]=address:port`);
    }
    const address = match[3]!.replace(/^\[|\]$/g, '');
    const network = (networks[match[1]!] ??= { endpoints: [], gateways: [] });
    network.gateways.push({ address, port });
    if (match[2]) clusters.set(`${match[1]}|${address}|${port}`, match[2]);
  }
  return { networks, clusters };
}
