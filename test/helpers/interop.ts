import { execFile } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import type { ServeConfig } from '../../src/config/schema.js';
import type { NodeMessage, XdsProtocol } from '../../src/xds/protocol/envelopes.js';
import { messageType } from '../../src/xds/protocol/protos.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { createCertificate, opensslCsr } from './ca-client.js';
import { startRelay } from './harness.js';
import { compareConfigs, ConfigProxy, summarize, type ConfigDifference, type ProxyConfig, type ProxyOptions } from './proxy-config.js';
import { ISTIOD_SERVER_NAME, type RealMesh } from './real-istio.js';


function metadataString(node: NodeMessage, key: string): string {
  const value = node.metadata?.fields?.[key] as { stringValue?: string } | undefined;
  return value?.stringValue ?? '';
}

/** The VM straight to istiod's 15012, authenticated with its service-account token, as istio-agent does. */
export async function directProxy(t: ExecutionContext, mesh: RealMesh, node: NodeMessage, protocol: XdsProtocol, options: ProxyOptions = {}): Promise<ConfigProxy> {
  const token = await mesh.token(metadataString(node, 'NAMESPACE'), metadataString(node, 'SERVICE_ACCOUNT'));
  const proxy = new ConfigProxy(mesh.istiod.secureGrpc, protocol, node, {
    ...options, client: mesh.secureClient(), headers: { authorization: `Bearer ${token}`, clusterid: 'Kubernetes' },
  });
  t.teardown(() => proxy.close());
  return proxy;
}

/** The same VM through the relay's listener, with its token (stream mode forwards it to istiod). */
export async function relayedProxy(t: ExecutionContext, mesh: RealMesh, relay: { target: string }, node: NodeMessage, protocol: XdsProtocol, options: ProxyOptions = {}): Promise<ConfigProxy> {
  const token = await mesh.token(metadataString(node, 'NAMESPACE'), metadataString(node, 'SERVICE_ACCOUNT'));
  const proxy = new ConfigProxy(relay.target, protocol, node, { headers: { authorization: `Bearer ${token}`, clusterid: 'Kubernetes' }, ...options });
  t.teardown(() => proxy.close());
  return proxy;
}

/**
 * A relay in front of the real istiod as deployed: TLS to istiod's 15012 addressed by IP, verified
 * against the mesh root under istiod's name. Stream mode carries each VM's own token; group mode a
 * current member's (docs/SECURITY.md), and keys VMs by what istiod binds to their addresses, read
 * from the mesh's API server (docs/ADDRESS-BINDING.md).
 */
export async function relayFor(t: ExecutionContext, mesh: RealMesh, mode: 'group' | 'stream', overrides: Partial<ServeConfig> = {}) {
  const relay = await startRelay({
    mode, caMode: 'off', upstream: mesh.istiod.secureGrpc, upstreamCaFile: mesh.rootCertFile, upstreamServerName: ISTIOD_SERVER_NAME,
    addressConfigSource: 'kubernetes', kubeconfig: mesh.kube.kubeconfig, ...overrides,
  });
  t.teardown(() => relay.stop());
  return relay;
}

function describe(differences: ConfigDifference[]): string {
  return differences.slice(0, 12).map((d) => `${d.type} ${d.name}: ${d.problem}`).join('\n');
}

/**
 * Settles both proxies and asserts they hold the same resources: identical bytes, or identical
 * decoded content for `decodedTypes` (where the relay translates on purpose).
 */
export async function assertSameConfig(t: ExecutionContext, direct: ConfigProxy, relayed: ConfigProxy, decodedTypes: string[] = []): Promise<ProxyConfig> {
  const [a, b] = await Promise.all([direct.settled(), relayed.settled()]);
  const differences = compareConfigs(a, b, decodedTypes);
  t.deepEqual(differences, [], `direct (${summarize(a)}) and through the relay (${summarize(b)}) differ:\n${describe(differences)}`);
  return b;
}

/**
 * Waits until the direct proxy's configuration satisfies `accept` and the relayed one equals it:
 * both sides converge to the same new state after a change.
 */
export async function assertConverged(t: ExecutionContext, direct: ConfigProxy, relayed: ConfigProxy, accept: (config: ProxyConfig) => boolean, decodedTypes: string[] = [], timeoutMs = 30_000): Promise<ProxyConfig> {
  const deadline = Date.now() + timeoutMs;
  let differences: ConfigDifference[] = [];
  let accepted = false;
  while (Date.now() < deadline) {
    const [a, b] = await Promise.all([direct.settled(500), relayed.settled(500)]);
    accepted = accept(a);
    differences = compareConfigs(a, b, decodedTypes);
    if (accepted && differences.length === 0) {
      t.pass();
      return b;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  t.fail(accepted ? `istiod's config changed but the relay's did not follow:\n${describe(differences)}` : 'istiod never reached the expected state');
  return new Map();
}

/** `address:port` of every endpoint istiod's EDS gives for a cluster. */
export function endpointsOf(config: ProxyConfig, cluster: string): string[] {
  const bytes = config.get(TypeUrl.endpoint)?.get(cluster);
  if (!bytes) return [];
  const assignment = messageType('envoy.config.endpoint.v3.ClusterLoadAssignment').decode(bytes) as any;
  const out: string[] = [];
  for (const locality of assignment.endpoints ?? []) {
    for (const lb of locality.lb_endpoints ?? []) {
      const socket = lb.endpoint?.address?.socket_address;
      const tlsMode = lb.metadata?.filter_metadata?.['envoy.transport_socket_match']?.fields?.tlsMode?.stringValue;
      out.push(`${socket?.address}:${socket?.port_value}${tlsMode ? ` tlsMode=${tlsMode}` : ''}`);
    }
  }
  return out.sort();
}

/**
 * Waits until istiod itself serves a VM a configuration that satisfies `accept` (over its plaintext
 * port): config changes take istiod a debounce to push, and the next test must not see them half done.
 */
export async function untilIstiodServes(mesh: RealMesh, node: NodeMessage, accept: (config: ProxyConfig) => boolean): Promise<void> {
  const proxy = new ConfigProxy(mesh.istiod.grpc, 'delta', node);
  try {
    await proxy.until(accept);
  } finally {
    proxy.close();
  }
}

/** Connections istiod's /debug/syncz lists (one per xDS stream it serves). */
export async function istiodConnections(mesh: RealMesh): Promise<Array<{ proxy: string }>> {
  return mesh.debug('/debug/syncz');
}

/** Runs test/helpers/proxyless-caller in its own process; resolves with the backend's answer. */
export function runProxylessCaller(target: string, bootstrap: object, deadlineMs = 30_000): Promise<string> {
  const script = fileURLToPath(new URL('./proxyless-caller.js', import.meta.url));
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [script, target, JSON.stringify(bootstrap), String(deadlineMs)], { timeout: deadlineMs + 10_000 }, (error, stdout, stderr) => (error ? reject(new Error(`proxyless caller failed: ${stderr || error.message}`)) : resolve(stdout.trim())));
  });
}

/** A client of the relay's TLS listener as a VM has it: trusting the mesh root under istiod's name, with its workload certificate if given. */
export function relayTlsClient(mesh: RealMesh, target: string, certificate?: { key: string; chain: string }): grpc.Client {
  const credentials = grpc.credentials.createSsl(mesh.rootCertPem, certificate ? Buffer.from(certificate.key) : null, certificate ? Buffer.from(certificate.chain) : null);
  return new grpc.Client(target, credentials, { 'grpc.ssl_target_name_override': ISTIOD_SERVER_NAME, 'grpc.use_local_subchannel_pool': 1 });
}

/** A workload certificate for vm/vm-sa, issued by istiod through the relay's TLS listener (forward CA mode) for the VM's token. */
export async function workloadCertificate(mesh: RealMesh, target: string): Promise<{ key: string; chain: string }> {
  const csr = opensslCsr('ec-p256');
  const client = relayTlsClient(mesh, target);
  try {
    const chain = await createCertificate(client, csr.csr, { authorization: `Bearer ${await mesh.token('vm', 'vm-sa')}`, clusterid: 'Kubernetes' });
    return { key: csr.keyPem, chain: chain.join('') };
  } finally {
    client.close();
  }
}

/** The relay's TLS listener as host:port. */
export const relayTlsAddress = (relay: { addresses: { tls?: { host: string; port: number } } }) => `${relay.addresses.tls!.host}:${relay.addresses.tls!.port}`;
