import type { Logger } from '../log.js';
import { ResourceCache } from '../xds/cache/resource-cache.js';
import { MemoLimit, NonceSource, ResponseMemo } from '../xds/cache/response-memo.js';
import type { ViewAttachment, ViewProvider, XdsView } from '../xds/view.js';
import { metadataString, type ProxyNode } from '../xds/protocol/node.js';
import { renderMesh, type SimVariant } from './config-generators.js';
import type { MeshEndpoint, MeshModel } from './mesh-model.js';

const SIM_MEMO_BYTES = 256 * 1024 * 1024;

/** One rendering of the mesh, shared by every proxy of the same variant. */
class SimView implements XdsView {
  readonly cache = new ResourceCache();
  readonly memo: ResponseMemo;
  proxies = 0;

  constructor(readonly variant: SimVariant, nonces: NonceSource, memoLimit: MemoLimit) {
    this.memo = new ResponseMemo(nonces, memoLimit);
    this.cache.onChange((change) => this.memo.invalidate(change.typeUrl));
  }

  /** The simulator always renders everything, so subscriptions need no upstream action. */
  changeInterest(): void {}

  /** Like istiod, the simulator only logs what proxies report (its sessions record it for syncz). */
  report(): void {}
}

export interface SimStats {
  pushes: number;
  lastPushAt: string;
  lastVersion: string;
  proxies: number;
  variants: number;
}

/**
 * A stand-in for istiod: renders Istio-shaped CDS/EDS/LDS/RDS per proxy network and generator from
 * a mesh model, pushes changes, and can churn endpoints. Each push's version carries its wall-clock
 * time (istiod-style `<RFC3339>/<n>`), so a client can measure how long the push took to reach it.
 */
export class SimIstiod implements ViewProvider {
  private readonly views = new Map<string, SimView>();
  private readonly nonces = new NonceSource();
  private readonly memoLimit = new MemoLimit(SIM_MEMO_BYTES);
  private pushCounter = 0;
  private churnTimer: NodeJS.Timeout | undefined;
  private churnStep = 0;
  readonly stats: SimStats = { pushes: 0, lastPushAt: '', lastVersion: '', proxies: 0, variants: 0 };

  constructor(private mesh: MeshModel, private readonly log: Logger) {}

  attach(node: ProxyNode): ViewAttachment {
    const variant: SimVariant = {
      network: metadataString(node, 'NETWORK'),
      generator: metadataString(node, 'GENERATOR') === 'grpc' ? 'grpc' : 'envoy',
    };
    const key = `${variant.generator}/${variant.network || '(no network)'}`;
    let view = this.views.get(key);
    if (!view) {
      view = new SimView(variant, this.nonces, this.memoLimit);
      this.views.set(key, view);
      this.render(view, this.nextVersion());
      this.stats.variants = this.views.size;
    }
    view.proxies++;
    this.stats.proxies++;
    const attached = view;
    return {
      view: attached,
      key,
      mode: 'sim',
      release: () => {
        attached.proxies--;
        this.stats.proxies--;
      },
    };
  }

  get meshModel(): MeshModel {
    return this.mesh;
  }

  /** Replaces the mesh and pushes what changed to every connected proxy. */
  updateMesh(mesh: MeshModel): void {
    this.mesh = mesh;
    const version = this.nextVersion();
    for (const view of this.views.values()) this.render(view, version);
    this.stats.pushes++;
    this.stats.lastPushAt = new Date().toISOString();
  }

  /** Replaces one service's endpoints (by `name.namespace`). */
  setEndpoints(serviceName: string, namespace: string, endpoints: MeshEndpoint[]): void {
    const services = this.mesh.services.map((service) =>
      service.name === serviceName && service.namespace === namespace ? { ...service, endpoints } : service);
    this.updateMesh({ ...this.mesh, services });
  }

  /** Changes one endpoint's weight per tick, round-robin over services, at `ratePerSecond`. */
  startChurn(ratePerSecond: number): void {
    this.stopChurn();
    if (ratePerSecond <= 0) return;
    this.churnTimer = setInterval(() => this.churnOnce(), Math.max(1, Math.round(1000 / ratePerSecond)));
    this.churnTimer.unref();
  }

  stopChurn(): void {
    clearInterval(this.churnTimer);
    this.churnTimer = undefined;
  }

  private churnOnce(): void {
    const candidates = this.mesh.services.filter((service) => service.endpoints.length > 0);
    if (candidates.length === 0) return;
    const service = candidates[this.churnStep++ % candidates.length]!;
    const endpoints = service.endpoints.map((endpoint, index) =>
      index === 0 ? { ...endpoint, weight: endpoint.weight >= 100 ? 1 : endpoint.weight + 1 } : endpoint);
    this.setEndpoints(service.name, service.namespace, endpoints);
  }

  private nextVersion(): string {
    const version = `${new Date().toISOString()}/${++this.pushCounter}`;
    this.stats.lastVersion = version;
    return version;
  }

  private render(view: SimView, versionInfo: string): void {
    const rendered = renderMesh(this.mesh, view.variant);
    for (const [typeUrl, resources] of rendered) {
      const change = view.cache.apply(typeUrl, resources, [], { replaceAll: true, versionInfo });
      if (change.changed.length || change.removed.length) {
        this.log.debug({ variant: view.variant, typeUrl, changed: change.changed.length, removed: change.removed.length, version: versionInfo }, 'sim push');
      }
    }
  }
}
