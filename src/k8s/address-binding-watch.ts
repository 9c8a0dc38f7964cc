import { CustomObjectsApi, DiscoveryV1Api, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from '../log.js';
import { bindingDigest, bindingsByAddress, type AddressBinding, type EndpointSliceObject, type ServiceEntryObject, type WorkloadEntryObject } from '../mesh/address-bindings.js';
import { proxyAddresses, type ProxyNode } from '../xds/protocol/node.js';
import type { BackoffPolicy } from '../transport/backoff.js';
import { loadKubeConfig } from './kube-client.js';
import { ResilientInformer } from './resilient-informer.js';
import { NETWORKING_GROUP, NETWORKING_VERSION } from './workload-entry-template.js';

/** Coalesces bursts of watch events (a kubectl apply of many objects) into one recomputation. */
const SETTLE_MS = 100;

/**
 * Watches what istiod binds to VM addresses — ServiceEntries, WorkloadEntries, EndpointSlices, read
 * from the same API server istiod reads (docs/ADDRESS-BINDING.md) — and tells, for a VM's
 * addresses, the digest its group key carries. Listeners hear when any address's bindings change.
 */
export class AddressBindingWatch {
  private readonly informers: Array<ResilientInformer<KubernetesObject>>;
  private readonly objects = { serviceEntries: [] as ServiceEntryObject[], workloadEntries: [] as WorkloadEntryObject[], endpointSlices: [] as EndpointSliceObject[] };
  private byAddress = new Map<string, AddressBinding[]>();
  private digests = new Map<string, string>();
  private readonly listeners = new Set<() => void>();
  private settleTimer: NodeJS.Timeout | undefined;
  private notifyTimer: NodeJS.Timeout | undefined;
  /** Resolves once every informer has delivered its first list. */
  private readonly synced: Promise<void>;
  /** Until every list has arrived, what is bound is unknown: each address is keyed apart (safe). */
  private complete = false;

  /**
   * `notifyDelayMs`: how long after a change listeners hear of it. istiod takes a change in after
   * its debounce (PILOT_DEBOUNCE_AFTER, 100 ms, up to PILOT_DEBOUNCE_MAX) and computes a stream's
   * service targets when the stream opens: a group re-opened before istiod has the change would be
   * computed without it.
   */
  constructor(kubeConfig: KubeConfig, private readonly log: Logger, backoff?: BackoffPolicy, private readonly notifyDelayMs = 2000) {
    const custom = kubeConfig.makeApiClient(CustomObjectsApi);
    const discovery = kubeConfig.makeApiClient(DiscoveryV1Api);
    const listCustom = (plural: string) => () => custom.listClusterCustomObject({ group: NETWORKING_GROUP, version: NETWORKING_VERSION, plural }) as Promise<KubernetesListObject<KubernetesObject>>;
    const pending: Array<Promise<void>> = [];
    const informer = (path: string, list: () => Promise<KubernetesListObject<KubernetesObject>>, take: (objects: readonly KubernetesObject[]) => void) => {
      let first: () => void = () => {};
      pending.push(new Promise<void>((resolve) => { first = resolve; }));
      return new ResilientInformer<KubernetesObject>(kubeConfig, path, list, undefined, (objects) => {
        take(objects);
        first();
        this.changed();
      }, log, backoff);
    };
    this.informers = [
      informer(`/apis/${NETWORKING_GROUP}/${NETWORKING_VERSION}/serviceentries`, listCustom('serviceentries'), (objects) => { this.objects.serviceEntries = objects as ServiceEntryObject[]; }),
      informer(`/apis/${NETWORKING_GROUP}/${NETWORKING_VERSION}/workloadentries`, listCustom('workloadentries'), (objects) => { this.objects.workloadEntries = objects as WorkloadEntryObject[]; }),
      informer('/apis/discovery.k8s.io/v1/endpointslices', () => discovery.listEndpointSliceForAllNamespaces({}) as Promise<KubernetesListObject<KubernetesObject>>,
        (objects) => { this.objects.endpointSlices = objects as EndpointSliceObject[]; }),
    ];
    this.synced = Promise.all(pending).then(() => {
      this.complete = true;
      // VMs keyed apart while the lists were incomplete are re-keyed, even if nothing is bound.
      this.recompute(true);
    });
  }

  /** Starts the watches and waits (at most `timeoutMs`) for their first lists, so the first VMs are keyed right. */
  async start(timeoutMs = 10_000): Promise<void> {
    await Promise.all(this.informers.map((informer) => informer.start()));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.synced, new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs); })]);
    clearTimeout(timer);
    if (!this.complete) this.log.error({ timeoutMs }, 'address-bound config (ServiceEntries, WorkloadEntries, EndpointSlices) not listed yet: each VM address is its own group until it is');
    this.recompute();
  }

  close(): void {
    clearTimeout(this.settleTimer);
    clearTimeout(this.notifyTimer);
    for (const informer of this.informers) informer.stop();
  }

  onChange(listener: () => void): void {
    this.listeners.add(listener);
  }

  /** The digest of what binds to these addresses; '' when nothing does. */
  digest(addresses: string[]): string {
    if (!this.complete) return `unlisted:${addresses.join(',')}`;
    const parts = addresses.map((address) => this.digests.get(address)).filter((digest): digest is string => !!digest);
    return parts.length <= 1 ? parts[0] ?? '' : parts.sort().join('+');
  }

  /** What binds to the addresses a group key's digest was made from, for /debug/groups. */
  describe(digest: string): AddressBinding[] {
    const addresses = [...this.digests].filter(([, own]) => digest.split('+').includes(own)).map(([address]) => address);
    const first = addresses[0];
    return first ? this.byAddress.get(first) ?? [] : [];
  }

  private changed(): void {
    clearTimeout(this.settleTimer);
    this.settleTimer = setTimeout(() => this.recompute(), SETTLE_MS);
  }

  private recompute(force = false): void {
    const byAddress = bindingsByAddress(this.objects);
    const digests = new Map([...byAddress].map(([address, list]) => [address, bindingDigest(list)]));
    const same = !force && digests.size === this.digests.size && [...digests].every(([address, digest]) => this.digests.get(address) === digest);
    this.byAddress = byAddress;
    this.digests = digests;
    if (same) return;
    this.log.info({ boundAddresses: digests.size }, 'config bound to VM addresses changed');
    const notify = () => { for (const listener of this.listeners) listener(); };
    // The first complete listing is the relay's own start: no istiod change to wait for.
    if (force) notify();
    else {
      clearTimeout(this.notifyTimer);
      this.notifyTimer = setTimeout(notify, this.notifyDelayMs);
    }
  }
}

export interface AddressKeying {
  /** What a VM's addresses add to its group key; undefined when nothing (addresses bind no config). */
  addressKey?: (node: ProxyNode) => string;
  /** The Kubernetes source, when the relay reads one. */
  watch?: AddressBindingWatch;
  /** How VM addresses are keyed, for the startup log. */
  policy: 'kubernetes' | 'independent' | 'per-address';
}

/**
 * How group mode keys VM addresses (docs/ADDRESS-BINDING.md): by what istiod binds to them when the
 * relay reads the same config (Kubernetes); not at all when the operator says nothing is bound or
 * the upstream is the embedded simulator (which binds nothing to addresses); otherwise by the
 * address itself — correct, with no sharing — and a startup warning saying so.
 */
export async function setUpAddressKeying(
  config: { addressConfigSource: 'none' | 'kubernetes'; addressIndependentConfig: boolean; addressRekeyDelaySeconds: number; upstream: string; kubeconfig: string; groupModeUsed: boolean },
  log: Logger,
  backoff?: BackoffPolicy,
): Promise<AddressKeying> {
  if (config.addressConfigSource === 'kubernetes') {
    const watch = new AddressBindingWatch(loadKubeConfig(config.kubeconfig), log, backoff, config.addressRekeyDelaySeconds * 1000);
    await watch.start();
    return { watch, addressKey: (node) => watch.digest(proxyAddresses(node)), policy: 'kubernetes' };
  }
  if (config.addressIndependentConfig || config.upstream === 'embedded') return { policy: 'independent' };
  if (config.groupModeUsed) {
    log.warn('group mode without addressConfigSource: every VM address is its own group, since istiod binds config to addresses '
      + '(ServiceEntry endpoints, WorkloadEntries) the relay cannot see. Set addressConfigSource: kubernetes, or addressIndependentConfig if no such config exists');
  }
  return { addressKey: (node) => proxyAddresses(node).join(','), policy: 'per-address' };
}
