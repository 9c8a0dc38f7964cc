import type { NodeMessage } from '../../src/xds/protocol/envelopes.js';
import { vmNode, type VmNodeOptions } from '../../src/sim/vm-node.js';
import type { RealMesh } from './real-istio.js';

/**
 * The mesh the real-Istio tests run against, shaped like the multi-network VM setups meshrelay
 * serves: httpbin.bar in the cluster (network net1, behind the east-west gateway), VMs in
 * namespaces `vm` and `vm2` on `vm-net`, and the config kinds that change one proxy's output:
 * DestinationRule subsets, a Sidecar scoping egress, an AuthorizationPolicy and a PeerAuthentication
 * selecting workloads by label, and a VM service whose endpoint is bound to one VM's address.
 */
export const VM_ADDRESS = { vmapp1: '10.9.0.5', legacy: '10.9.0.6', other: '10.9.0.7' };
export const HTTPBIN_PODS = [
  { name: 'httpbin-v1', ip: '10.244.0.11', version: 'v1' },
  { name: 'httpbin-v2', ip: '10.244.0.12', version: 'v2' },
];

const ns = (name: string, labels: Record<string, string> = {}) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
const sa = (namespace: string, name: string) => ({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace } });

function httpbinPod(pod: { name: string; version: string }) {
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: {
      name: pod.name, namespace: 'bar',
      labels: { app: 'httpbin', version: pod.version, 'security.istio.io/tlsMode': 'istio', 'service.istio.io/canonical-name': 'httpbin' },
    },
    spec: { serviceAccountName: 'httpbin', containers: [{ name: 'httpbin', image: 'docker.io/kong/httpbin' }] },
  };
}

/** An EndpointSlice as the endpoint-slice controller would write it for the httpbin pods. */
export function httpbinEndpointSlice(pods = HTTPBIN_PODS) {
  return {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: { name: 'httpbin-slice', namespace: 'bar', labels: { 'kubernetes.io/service-name': 'httpbin', 'endpointslice.kubernetes.io/managed-by': 'meshrelay-test' } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 80, protocol: 'TCP' }],
    endpoints: pods.map((pod) => ({
      addresses: [pod.ip], conditions: { ready: true, serving: true, terminating: false },
      targetRef: { kind: 'Pod', namespace: 'bar', name: pod.name },
    })),
  };
}

export const baseObjects: object[] = [
  ns('bar'), ns('vm'), ns('vm2'),
  sa('bar', 'httpbin'), sa('vm', 'vm-sa'), sa('vm', 'vm-other-sa'), sa('vm2', 'vm2-sa'),
  ...HTTPBIN_PODS.map(httpbinPod),
  {
    apiVersion: 'v1', kind: 'Service', metadata: { name: 'httpbin', namespace: 'bar' },
    spec: { selector: { app: 'httpbin' }, ports: [{ name: 'http', port: 8000, targetPort: 80 }] },
  },
  httpbinEndpointSlice(),
  {
    apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'httpbin', namespace: 'bar' },
    spec: { host: 'httpbin.bar.svc.cluster.local', subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] },
  },
  // VMs in namespace vm register through this group (istioctl x workload group create).
  {
    apiVersion: 'networking.istio.io/v1', kind: 'WorkloadGroup', metadata: { name: 'vmapp', namespace: 'vm' },
    spec: { metadata: { labels: { app: 'vmapp' } }, template: { serviceAccount: 'vm-sa', network: 'vm-net' } },
  },
  // The VM service: a Kubernetes Service selecting by label; istiod matches it to VMs' LABELS and to
  // WorkloadEntries, so every VM labelled app=vmapp gets inbound 8080, whatever its address.
  {
    apiVersion: 'v1', kind: 'Service', metadata: { name: 'vmapp', namespace: 'vm' },
    spec: { selector: { app: 'vmapp' }, ports: [{ name: 'http', port: 8080, targetPort: 8080 }] },
  },
  {
    apiVersion: 'networking.istio.io/v1', kind: 'WorkloadEntry', metadata: { name: 'vmapp-1', namespace: 'vm' },
    spec: { address: VM_ADDRESS.vmapp1, labels: { app: 'vmapp' }, serviceAccount: 'vm-sa', network: 'vm-net' },
  },
  // A VM service published the way Istio's 1.x mesh-expansion guides did: a ServiceEntry whose
  // endpoint is one VM's address, with no workload selector. Only that VM gets inbound 9090.
  {
    apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: { name: 'legacy', namespace: 'vm' },
    spec: {
      hosts: ['legacy.vm.svc.cluster.local'], location: 'MESH_INTERNAL', resolution: 'STATIC',
      ports: [{ number: 9090, name: 'http', protocol: 'HTTP' }], endpoints: [{ address: VM_ADDRESS.legacy }],
    },
  },
  // Inbound policy for workloads labelled `secure: "true"`.
  {
    apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'vmapp-secure', namespace: 'vm' },
    spec: { selector: { matchLabels: { secure: 'true' } }, action: 'ALLOW', rules: [{ from: [{ source: { principals: ['cluster.local/ns/bar/sa/httpbin'] } }] }] },
  },
  {
    apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'vmapp-secure', namespace: 'vm' },
    spec: { selector: { matchLabels: { secure: 'true' } }, mtls: { mode: 'STRICT' } },
  },
  // Namespace vm2 sees only its own namespace and istio-system.
  {
    apiVersion: 'networking.istio.io/v1', kind: 'Sidecar', metadata: { name: 'default', namespace: 'vm2' },
    spec: { egress: [{ hosts: ['./*', 'istio-system/*'] }] },
  },
];

/** Applies the fixture and gives the httpbin pods the addresses a kubelet would report. */
export async function installVmMeshFixture(mesh: RealMesh): Promise<void> {
  await mesh.apply(baseObjects);
  for (const pod of HTTPBIN_PODS) {
    await mesh.kube.request('PATCH', `/api/v1/namespaces/bar/pods/${pod.name}/status`, {
      status: { phase: 'Running', podIP: pod.ip, podIPs: [{ ip: pod.ip }], conditions: [{ type: 'Ready', status: 'True' }] },
    }, 'application/merge-patch+json');
  }
}

/** A VM's node as istio-agent sends it to this mesh (cluster id `Kubernetes`, network vm-net). */
export function realVmNode(options: VmNodeOptions & { ip: string }): NodeMessage {
  return vmNode({
    namespace: 'vm', serviceAccount: 'vm-sa', network: 'vm-net', labels: { app: 'vmapp' },
    ...options,
    extra: { CLUSTER_ID: 'Kubernetes', ...options.extra },
  });
}
