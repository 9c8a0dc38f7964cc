import { messageType } from '../xds/protocol/protos.js';
import { parseClusterName } from './istio-tls.js';
import { repairClusterSni } from './sni-repair.js';

type Decoded = Record<string, any>;

/**
 * Legacy multi-network meshes (Istio ≤ 1.9) named remote services `<name>.<ns>.global`, and their
 * gateways rewrote `.global` to `.svc.<domain>` in the SNI. Modern AUTO_PASSTHROUGH gateways do not,
 * so during a migration the relay bridges the two names (docs/SPLIT-HORIZON.md).
 */
export class GlobalNames {
  private readonly svcSuffix: string;

  constructor(clusterDomain: string) {
    this.svcSuffix = `.svc.${clusterDomain}`;
  }

  /** `name.ns.global` → `name.ns.svc.<domain>`; other hosts unchanged. */
  toSvc(host: string): string {
    const match = /^([^.]+)\.([^.]+)\.global$/.exec(host);
    return match ? `${match[1]}.${match[2]}${this.svcSuffix}` : host;
  }

  /** `name.ns.svc.<domain>` → `name.ns.global`, or undefined for other hosts. */
  toGlobal(host: string): string | undefined {
    if (!host.endsWith(this.svcSuffix)) return undefined;
    const parts = host.slice(0, -this.svcSuffix.length).split('.');
    return parts.length === 2 ? `${parts[0]}.${parts[1]}.global` : undefined;
  }

  /**
   * A cluster for a `.global` host keeps its name (the VM's routes use it) but gets the SNI of the
   * `.svc` host, which a modern gateway has a cluster for. Others are left as they are.
   */
  cluster(body: Buffer): Buffer {
    const type = messageType('envoy.config.cluster.v3.Cluster');
    const name = String((type.decode(body) as unknown as Decoded).name ?? '');
    const parsed = parseClusterName(name);
    if (!parsed || !parsed.host.endsWith('.global')) return body;
    return repairClusterSni(body, (host) => this.toSvc(host));
  }

  /**
   * Virtual hosts for `name.ns.svc.<domain>[:port]` also answer to `name.ns.global[:port]`, so apps
   * still calling the old names reach the modern clusters.
   */
  routes(body: Buffer): Buffer {
    const type = messageType('envoy.config.route.v3.RouteConfiguration');
    const config = type.toObject(type.decode(body), { longs: Number, enums: Number, defaults: false }) as Decoded;
    let added = false;
    for (const virtualHost of (config.virtual_hosts ?? []) as Decoded[]) {
      const domains: string[] = virtualHost.domains ?? [];
      const present = new Set(domains);
      for (const domain of [...domains]) {
        const [host, port] = domain.split(':');
        const legacy = this.toGlobal(host!);
        const alias = legacy && (port ? `${legacy}:${port}` : legacy);
        if (alias && !present.has(alias)) {
          domains.push(alias);
          present.add(alias);
          added = true;
        }
      }
      virtualHost.domains = domains;
    }
    return added ? Buffer.from(type.encode(type.fromObject(config)).finish()) : body;
  }
}
