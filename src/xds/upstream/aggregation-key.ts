import { createHash } from 'node:crypto';
import type { ProxyNode } from '../protocol/node.js';
import type { JsonValue } from '../protocol/struct.js';

/**
 * Which parts of a node may differ inside one group. Everything else — including metadata keys
 * the relay has never heard of — goes into the key: over-splitting costs an upstream stream,
 * under-splitting would serve a VM someone else's config (docs/ISTIO-FACTS.md).
 */
export interface AggregationRules {
  /** Metadata keys that are per instance and do not change what istiod computes. */
  perInstanceMetadata: string[];
  /** LABELS keys that are per instance. */
  perInstanceLabels: string[];
  /**
   * What the node's addresses contribute to the key (docs/ADDRESS-BINDING.md): a digest of the
   * config istiod binds to them, the addresses themselves, or '' when nothing is bound.
   */
  addressKey?: (node: ProxyNode) => string;
}

export interface AggregationKey {
  /** Readable prefix plus a hash of every field; equal for nodes istiod would configure alike. */
  key: string;
  fields: { [field: string]: JsonValue };
}

export function aggregationKey(node: ProxyNode, rules: AggregationRules): AggregationKey {
  const perInstance = new Set(rules.perInstanceMetadata);
  const fields: { [field: string]: JsonValue } = { '@type': node.proxyType };
  for (const [name, value] of Object.entries(node.metadata)) {
    if (perInstance.has(name)) continue;
    fields[name] = name === 'LABELS' ? withoutKeys(value, rules.perInstanceLabels) : value;
  }
  const address = rules.addressKey?.(node);
  if (address) fields['@address'] = address;
  const digest = createHash('sha256').update(canonicalJson(fields)).digest('hex').slice(0, 12);
  const readable = [node.proxyType || 'node', str(fields.NAMESPACE), str(fields.SERVICE_ACCOUNT), str(fields.NETWORK)].filter(Boolean).join('/');
  return { key: `${readable}#${digest}`, fields };
}

function str(value: JsonValue | undefined): string {
  return typeof value === 'string' ? value : '';
}

function withoutKeys(value: JsonValue, keys: string[]): JsonValue {
  if (!value || typeof value !== 'object' || Array.isArray(value) || keys.length === 0) return value;
  const out: { [key: string]: JsonValue } = {};
  for (const [key, inner] of Object.entries(value)) if (!keys.includes(key)) out[key] = inner;
  return out;
}

/** JSON with object keys sorted, so equal metadata hashes equally whatever its order. */
export function canonicalJson(value: JsonValue): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  return `{${Object.keys(value).sort().map((key) => `${JSON.stringify(key)}:${canonicalJson(value[key]!)}`).join(',')}}`;
}
