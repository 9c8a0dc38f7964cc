import type { Registry } from 'prom-client';
import type { CaSubsystem } from '../ca/ca-setup.js';
import type { AddressKeying } from '../k8s/address-binding-watch.js';
import type { Logger } from '../log.js';
import type { NetworkTopology } from '../mesh/network-topology.js';
import type { AdsService } from '../xds/downstream/ads-service.js';
import type { GroupRegistry } from '../xds/upstream/group-registry.js';

/** What the admin routes read from the relay. */
export interface RelayAdminView {
  metrics: Registry;
  readiness(): { ready: boolean; detail: Record<string, unknown> };
  ads: AdsService;
  groups: GroupRegistry;
  topology: NetworkTopology;
  addressKeying: AddressKeying;
  log: Logger;
  ca: CaSubsystem | undefined;
  addresses: { upstream: string };
}

