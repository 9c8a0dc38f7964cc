import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { formatAddress } from '../../src/transport/listen-address.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { AdsTestClient, vmNode } from './ads-client.js';
import type { CaRig } from './ca-rig.js';
import type { KubeApiServer } from './kube-apiserver.js';

/** Where a registering VM connects: the relay's TLS listener, and the mesh root it trusts. */
export interface RegistrationTarget {
  tlsTarget: string;
  rootFile: string;
}

/** The TLS listener of an in-process relay rig. */
export const rigTarget = (r: CaRig): RegistrationTarget => ({ tlsTarget: formatAddress(r.relay.addresses.tls!), rootFile: r.rootFile });

export interface RegisteringVmOptions {
  serviceAccount?: string;
  group?: string;
  readinessProbe?: boolean;
}

/**
 * A VM as istio-agent connects it for auto-registration: TLS to the relay's 15012 (trusting the
 * mesh root), a projected service-account token for istio-ca from the API server, and
 * AUTO_REGISTER_GROUP in its node (vm namespace, address 172.16.0.5, network vm-net). Sends CDS.
 */
export async function connectRegisteringVm(relay: RegistrationTarget, api: KubeApiServer, options: RegisteringVmOptions = {}): Promise<AdsTestClient<'delta'>> {
  const { serviceAccount = 'vm-sa', group = 'vm-app' } = options;
  const target = relay.tlsTarget;
  const client = new grpc.Client(target, grpc.credentials.createSsl(readFileSync(relay.rootFile)), { 'grpc.ssl_target_name_override': 'istiod.istio-system.svc' });
  const token = await api.token('vm', serviceAccount, ['istio-ca']);
  const vm = new AdsTestClient(target, 'delta', client, { authorization: `Bearer ${token}` }, true);
  vm.send({
    node: vmNode({
      serviceAccount, labels: { app: 'vm-app', version: 'v2' },
      extra: { AUTO_REGISTER_GROUP: group, ...(options.readinessProbe ? { PROXY_CONFIG: { readinessProbe: { httpGet: { port: 8080, path: '/ready' } } } } : {}) },
    }),
    type_url: TypeUrl.cluster,
  });
  return vm;
}
