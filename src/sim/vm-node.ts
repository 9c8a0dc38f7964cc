import type { NodeMessage } from '../xds/protocol/envelopes.js';
import { jsonToStruct, type JsonValue } from '../xds/protocol/struct.js';

export interface VmNodeOptions {
  name?: string;
  ip?: string;
  namespace?: string;
  serviceAccount?: string;
  network?: string;
  labels?: Record<string, string>;
  extra?: Record<string, JsonValue>;
}

/** A node as istio-agent builds it for a VM (docs/ISTIO-FACTS.md): what the tests and the bench's simulated VMs send. */
export function vmNode(options: VmNodeOptions = {}): NodeMessage {
  const { name = 'vm-1', ip = '172.16.0.5', namespace = 'vm', serviceAccount = 'vm-sa', network = 'vm-net', labels = { app: 'vm-app' } } = options;
  return {
    id: `sidecar~${ip}~${name}.${namespace}~${namespace}.svc.cluster.local`,
    cluster: `vm-app.${namespace}`,
    metadata: jsonToStruct({
      NAMESPACE: namespace,
      SERVICE_ACCOUNT: serviceAccount,
      WORKLOAD_NAME: name,
      LABELS: labels,
      NETWORK: network,
      CLUSTER_ID: 'cluster1',
      MESH_ID: 'mesh1',
      ISTIO_VERSION: '1.30.3',
      INSTANCE_IPS: ip,
      INTERCEPTION_MODE: 'REDIRECT',
      DNS_CAPTURE: 'true',
      ...(options.extra ?? {}),
    }) as NodeMessage['metadata'],
  };
}
