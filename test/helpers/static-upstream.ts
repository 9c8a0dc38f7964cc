import { ResourceCache, type ResourceUpdate } from '../../src/xds/cache/resource-cache.js';
import { MemoLimit, NonceSource, ResponseMemo } from '../../src/xds/cache/response-memo.js';
import { AdsService } from '../../src/xds/downstream/ads-service.js';
import type { StreamIdentity, ViewAttachment, ViewProvider, XdsView } from '../../src/xds/view.js';
import type { ProxyNode } from '../../src/xds/protocol/node.js';
import { GrpcServer } from '../../src/transport/grpc-server.js';
import { formatAddress, type ListenAddress } from '../../src/transport/listen-address.js';
import { testLog } from './harness.js';

/**
 * A generic xDS control plane whose resources the test sets by hand (the relay's upstream need not
 * be istiod: any ADS server, docs/ARCHITECTURE.md). Every proxy sees the same cache.
 */
class StaticProvider implements ViewProvider, XdsView {
  readonly cache = new ResourceCache();
  readonly memo = new ResponseMemo(new NonceSource(), new MemoLimit(Number.POSITIVE_INFINITY));
  readonly interest: Array<{ typeUrl: string; added: string[]; removed: string[]; wildcard: number }> = [];

  constructor() {
    this.cache.onChange((change) => this.memo.invalidate(change.typeUrl));
  }

  changeInterest(typeUrl: string, change: { added: string[]; removed: string[]; wildcard: number }): void {
    this.interest.push({ typeUrl, ...change });
  }

  report(): void {}

  /** What each proxy stream arrived with: node id and call metadata (headers). */
  readonly attachments: Array<{ node: string; metadata: Record<string, string> }> = [];

  attach(node: ProxyNode, stream: StreamIdentity): ViewAttachment {
    this.attachments.push({ node: node.id, metadata: stream.callMetadata });
    return { view: this, key: 'static', mode: 'static', release: () => {} };
  }
}

export interface StaticUpstream {
  cache: ResourceCache;
  attachments: StaticProvider['attachments'];
  ads: AdsService;
  server: GrpcServer;
  target: string;
  address: ListenAddress;
  /** Replaces the whole set of one type (absent names are deleted). */
  set(typeUrl: string, resources: Record<string, string | Buffer>, versionInfo?: string): void;
  close(): Promise<void>;
}

/**
 * An opaque resource as protobuf bytes: field 1 is the name (as in every xDS resource, so SotW
 * upstreams can name it) and field 15 the test's content.
 */
export function resourceBody(name: string, content: string | Buffer): Buffer {
  const field = (tag: number, bytes: Buffer) => Buffer.concat([Buffer.from([tag]), varint(bytes.length), bytes]);
  return Buffer.concat([field(0x0a, Buffer.from(name)), field(0x7a, Buffer.isBuffer(content) ? content : Buffer.from(content))]);
}

function varint(value: number): Buffer {
  const bytes: number[] = [];
  while (value > 127) { bytes.push((value & 0x7f) | 0x80); value = Math.floor(value / 128); }
  bytes.push(value);
  return Buffer.from(bytes);
}

/** `limits`: what the upstream refuses, like istiod's message size limit. */
export async function startStaticUpstream(port = 0, limits: { maxMessageBytes?: number; maxNamesPerRequest?: number } = {}): Promise<StaticUpstream> {
  const provider = new StaticProvider();
  const server = new GrpcServer({ maxMessageBytes: limits.maxMessageBytes ?? 64 * 1024 * 1024, maxStreamsPerConnection: 100_000, log: testLog });
  const ads = new AdsService(provider, { maxNamesPerRequest: limits.maxNamesPerRequest ?? 100_000, maxTypesPerStream: 64 }, testLog);
  ads.register(server);
  const address = await server.listen({ host: '127.0.0.1', port });
  return {
    cache: provider.cache,
    attachments: provider.attachments,
    ads,
    server,
    address,
    target: formatAddress(address),
    set(typeUrl, resources, versionInfo) {
      const updates: ResourceUpdate[] = Object.entries(resources).map(([name, value]) => ({ name, body: resourceBody(name, value) }));
      provider.cache.apply(typeUrl, updates, [], { replaceAll: true, ...(versionInfo ? { versionInfo } : {}) });
    },
    close: () => server.close(0),
  };
}
