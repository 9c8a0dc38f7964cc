import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { messageType } from '../../src/xds/protocol/protos.js';
import { jsonToStruct } from '../../src/xds/protocol/struct.js';
import { Envelopes, type NodeMessage } from '../../src/xds/protocol/envelopes.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { opensslVerify } from '../helpers/ca-client.js';
import { eventually } from '../helpers/harness.js';
import { assertSameConfig, directProxy, relayFor, relayTlsAddress, relayTlsClient, workloadCertificate } from '../helpers/interop.js';
import { renderKustomization } from '../helpers/kubectl.js';
import { ConfigProxy } from '../helpers/proxy-config.js';
import { ISTIOD_SERVER_NAME, realIstioUnavailable, startRealMesh, type RealMesh } from '../helpers/real-istio.js';
import { configureVm, startVmAgent, type VmAgent } from '../helpers/vm-agent.js';
import { installVmMeshFixture, realVmNode } from '../helpers/vm-mesh-fixture.js';
import { loadConfig } from '../../src/config/load.js';
import { serveSchema, type ServeConfig } from '../../src/config/schema.js';

// The real VM agent (pilot-agent, files from `istioctl x workload entry configure`) with the relay
// as its PILOT_ADDRESS, against the real istiod. istiod trusts x-forwarded-client-cert from loopback
// here (TRUSTED_GATEWAY_CIDR), so a VM can renew with its certificate through the relay.
const unavailable = realIstioUnavailable('agent', 'istioctl');
const interop = unavailable ? test.skip : test.serial;
if (unavailable) console.warn(`skipping the real VM agent tests: ${unavailable}`);

let mesh: RealMesh;
let servingCert: { cert: string; key: string };
test.before(async (t) => {
  if (unavailable) return;
  t.timeout(300_000);
  mesh = await startRealMesh({ trustedGatewayCidr: '127.0.0.1/32' });
  await installVmMeshFixture(mesh);
  servingCert = mesh.relayServingCertificate();
});
test.after.always(async () => {
  await mesh?.close();
});

/**
 * The relay as deployed for VMs (deploy/base): TLS listener with istiod's name, tokens checked with
 * TokenReview, CSRs forwarded to istiod. No client CA file is given: in forward mode the relay
 * verifies VMs' workload certificates against the root it verifies istiod with.
 */
function productionRelay(t: Parameters<typeof relayFor>[0], mode: 'group' | 'stream', extra: Record<string, unknown> = {}) {
  return relayFor(t, mesh, mode, {
    tlsListen: '127.0.0.1:0', tlsCertFile: servingCert.cert, tlsKeyFile: servingCert.key,
    tokenReview: true, kubeconfig: mesh.kube.kubeconfig,
    caMode: 'forward', caUpstream: mesh.istiod.secureGrpc, upstreamCaFile: mesh.rootCertFile, upstreamServerName: ISTIOD_SERVER_NAME,
    ...extra,
  });
}


/** An agent for a VM of `registerIn` (auto-registered), or of the fixture's `vmapp` group (a static entry). */
async function agentFor(t: Parameters<typeof relayFor>[0], pilotAddress: string, internalIp: string, env: Record<string, string> = {}, registerIn?: string): Promise<VmAgent> {
  const files = await configureVm(mesh, { group: registerIn ?? 'vmapp', namespace: 'vm', internalIp, autoRegister: registerIn !== undefined });
  const agent = await startVmAgent(files, pilotAddress, env);
  t.teardown(() => agent.close());
  return agent;
}

/** The stand-in Envoy: the node from the bootstrap the agent wrote, on the agent's XDS socket. */
function envoyOn(t: Parameters<typeof relayFor>[0], agent: VmAgent): ConfigProxy {
  const node = agent.envoyNode();
  const proxy = new ConfigProxy(agent.xdsTarget, 'delta', { ...node, metadata: jsonToStruct(node.metadata) } as NodeMessage);
  t.teardown(() => proxy.close());
  return proxy;
}

/** The workload certificate chain the agent serves Envoy over SDS (StreamSecrets, resource `default`). */
function sdsCertificate(agent: VmAgent): Promise<string[]> {
  const client = new grpc.Client(agent.sdsTarget, grpc.credentials.createInsecure());
  const identity = (b: Buffer) => b;
  const stream = client.makeBidiStreamRequest('/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets', identity, identity);
  return new Promise<string[]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no secret from the agent\'s SDS within 30 s')), 30_000);
    stream.on('data', (bytes: Buffer) => {
      clearTimeout(timer);
      const secret = messageType('envoy.extensions.transport_sockets.tls.v3.Secret').decode(Envelopes.decodeResponse(bytes).resources[0]!.value) as any;
      resolve(Buffer.from(secret.tls_certificate.certificate_chain.inline_bytes).toString().split(/(?=-----BEGIN CERTIFICATE-----)/));
    });
    stream.on('error', (error: Error) => { clearTimeout(timer); reject(error); });
    stream.write(Envelopes.encodeRequest({ node: { id: agent.envoyNode().id }, type_url: TypeUrl.secret, resource_names: ['default'] }));
  }).finally(() => { stream.cancel(); client.close(); });
}

for (const mode of ['group', 'stream'] as const) {
  interop(`[${mode}] pilot-agent through the relay: istiod's CA signs its workload certificate, and its Envoy gets the config an agent straight to istiod gets`, async (t) => {
    t.timeout(120_000);
    const relay = await productionRelay(t, mode);
    const throughRelay = await agentFor(t, relayTlsAddress(relay), '10.9.0.8');
    const chain = await sdsCertificate(throughRelay).catch((error: Error) => { throw new Error(`${error.message}\n${throughRelay.log().slice(-3000)}`); });
    t.regex(opensslVerify([...chain, mesh.rootCertPem.toString()], mesh.rootCertFile), /OK/);
    t.is(new X509Certificate(chain[0]!).subjectAltName, 'URI:spiffe://cluster.local/ns/vm/sa/vm-sa');
    const direct = await agentFor(t, mesh.istiod.secureGrpc, '10.9.0.8');
    await assertSameConfig(t, envoyOn(t, direct), envoyOn(t, throughRelay));
  });
}

for (const mode of ['group', 'stream'] as const) interop(`[${mode}] a VM whose token is gone renews its workload certificate through the relay with its certificate (XFCC to istiod)`, async (t) => {
  t.timeout(150_000);
  const relay = await productionRelay(t, mode);
  const files = await configureVm(mesh, { group: 'vmapp', namespace: 'vm', internalIp: '10.9.0.9' });
  const first = await startVmAgent(files, relayTlsAddress(relay));
  const issued = await sdsCertificate(first).finally(() => first.close());
  // The token expires (istioctl's last an hour); the agent restarts with only the certificate it wrote.
  rmSync(path.join(first.root, 'var/run/secrets/tokens/istio-token'));
  const restarted = await startVmAgent(files, relayTlsAddress(relay), {}, first.root);
  t.teardown(() => restarted.close());
  const renewed = await sdsCertificate(restarted).catch((error: Error) => { throw new Error(`${error.message}\n${restarted.log().slice(-2000)}`); });
  t.not(new X509Certificate(renewed[0]!).serialNumber, new X509Certificate(issued[0]!).serialNumber, 'a new certificate');
  t.regex(opensslVerify([...renewed, mesh.rootCertPem.toString()], mesh.rootCertFile), /OK/);
  t.is(new X509Certificate(renewed[0]!).subjectAltName, 'URI:spiffe://cluster.local/ns/vm/sa/vm-sa');
});

/** A WorkloadEntry once it exists (istiod or the relay names it `<group>-<ip>-<network>`). */
function workloadEntry(group: string, ip: string, accept: (entry: any) => boolean = () => true): Promise<any> {
  const name = `${group}-${ip}-vm-net`;
  return eventually(() => mesh.kube.request('GET', `/apis/networking.istio.io/v1/namespaces/vm/workloadentries/${name}`).catch(() => undefined), (found) => !!found && accept(found), 30_000);
}

/** The fields of a WorkloadEntry istiod derives from the group and the VM, with the VM's address abstracted. */
function comparableEntry(entry: any, ip: string) {
  return {
    name: entry.metadata.name.replace(ip, '<ip>'),
    labels: entry.metadata.labels,
    annotations: Object.keys(entry.metadata.annotations).sort(),
    autoRegistrationGroup: entry.metadata.annotations['istio.io/autoRegistrationGroup'],
    owner: entry.metadata.ownerReferences?.map((o: any) => ({ kind: o.kind, name: o.name, uid: o.uid, controller: o.controller })),
    spec: { ...entry.spec, address: entry.spec.address.replace(ip, '<ip>') },
  };
}

/** The group-mode relay that registers the VMs it serves, on its TLS listener (tokens via TokenReview). */
function registeringRelay(t: Parameters<typeof relayFor>[0]) {
  return relayFor(t, mesh, 'group', {
    tlsListen: '127.0.0.1:0', tlsCertFile: servingCert.cert, tlsKeyFile: servingCert.key, tlsClientCaFile: mesh.rootCertFile,
    tokenReview: true, kubeconfig: mesh.kube.kubeconfig, autoRegistration: true, instanceId: 'meshrelay-test',
  });
}

interop('auto-registration: the WorkloadEntry the relay writes for an agent (group mode) equals the one istiod writes for an agent connected straight to it', async (t) => {
  t.timeout(150_000);
  const group = {
    apiVersion: 'networking.istio.io/v1', kind: 'WorkloadGroup', metadata: { name: 'vmreg', namespace: 'vm', labels: { team: 'payments' } },
    spec: { metadata: { labels: { app: 'vmreg' }, annotations: { 'example.com/owner': 'ops' } }, template: { serviceAccount: 'vm-sa', network: 'vm-net' } },
  };
  await mesh.apply([group]);
  const relay = await registeringRelay(t);
  const direct = await agentFor(t, mesh.istiod.secureGrpc, '10.9.0.20', {}, 'vmreg');
  envoyOn(t, direct);
  const byIstiod = await workloadEntry('vmreg', '10.9.0.20');
  const throughRelay = await agentFor(t, relayTlsAddress(relay), '10.9.0.21', {}, 'vmreg');
  envoyOn(t, throughRelay);
  const byRelay = await workloadEntry('vmreg', '10.9.0.21');
  t.deepEqual(comparableEntry(byRelay, '10.9.0.21'), comparableEntry(byIstiod, '10.9.0.20'));
  // Only the relay registers a VM it serves in group mode; istiod must not claim the same entry
  // through the group's upstream stream.
  await new Promise((resolve) => setTimeout(resolve, 3000));
  const settled = await workloadEntry('vmreg', '10.9.0.21');
  t.is(settled.metadata.annotations['istio.io/workloadController'], 'meshrelay-test');
});

interop('auto-registration with a WorkloadGroup probe: the agent\'s health reports reach the entry\'s Healthy condition through the relay as they do straight to istiod, healthy and then failing', async (t) => {
  t.timeout(180_000);
  // The application both VMs probe: a TCP port that accepts, and later refuses.
  const app = net.createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  t.teardown(() => { app.close(); });
  const port = (app.address() as net.AddressInfo).port;
  await mesh.apply([{
    apiVersion: 'networking.istio.io/v1', kind: 'WorkloadGroup', metadata: { name: 'vmhealth', namespace: 'vm' },
    spec: {
      metadata: { labels: { app: 'vmhealth' } }, template: { serviceAccount: 'vm-sa', network: 'vm-net' },
      probe: { tcpSocket: { host: '127.0.0.1', port }, periodSeconds: 1, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 1 },
    },
  }]);
  const relay = await registeringRelay(t);
  const healthy = (status: string) => (entry: any) => entry.status?.conditions?.some((c: any) => c.type === 'Healthy' && c.status === status);
  const condition = (entry: any) => {
    const { type, status, message, reason } = entry.status.conditions.find((c: any) => c.type === 'Healthy');
    return { type, status, reason, message };
  };
  const direct = await agentFor(t, mesh.istiod.secureGrpc, '10.9.0.30', {}, 'vmhealth');
  envoyOn(t, direct);
  const throughRelay = await agentFor(t, relayTlsAddress(relay), '10.9.0.31', {}, 'vmhealth');
  envoyOn(t, throughRelay);
  const [byIstiod, byRelay] = await Promise.all([workloadEntry('vmhealth', '10.9.0.30', healthy('True')), workloadEntry('vmhealth', '10.9.0.31', healthy('True'))]);
  t.deepEqual(comparableEntry(byRelay, '10.9.0.31'), comparableEntry(byIstiod, '10.9.0.30'), 'the entries, health-check annotation included');
  t.deepEqual(condition(byRelay), condition(byIstiod));
  // The application stops accepting: both agents report it, both entries turn unhealthy alike.
  await new Promise<void>((resolve) => app.close(() => resolve()));
  const [failingByIstiod, failingByRelay] = await Promise.all([workloadEntry('vmhealth', '10.9.0.30', healthy('False')), workloadEntry('vmhealth', '10.9.0.31', healthy('False'))]);
  t.deepEqual(condition(failingByRelay), condition(failingByIstiod));
  t.regex(condition(failingByRelay).message, /connection refused/);
});

/**
 * deploy/base's relay config exactly as kustomize renders it, with only what a test host cannot
 * have rewritten: file paths to this mesh's files, istiod's service name to its loopback address
 * (verified under that name), listeners to free loopback ports, in-cluster credentials to a kubeconfig.
 */
async function deployedConfig(): Promise<Partial<ServeConfig>> {
  const objects = await renderKustomization('deploy/base');
  const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.data?.['config.yaml']);
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'deployed-config-')), 'config.yaml');
  writeFileSync(file, configMap.data['config.yaml']);
  const deployed = loadConfig(serveSchema, ['--config', file], {});
  const state = mkdtempSync(path.join(tmpdir(), 'deployed-state-'));
  const files: Record<string, string> = {
    '/var/run/secrets/istio/root-cert.pem': mesh.rootCertFile, '/var/run/secrets/meshrelay/tls.crt': servingCert.cert, '/var/run/secrets/meshrelay/tls.key': servingCert.key,
  };
  const istiodService = `${ISTIOD_SERVER_NAME}:15012`;
  assertDeployedShape(deployed, istiodService, Object.keys(files));
  const rewritten = (value: string) => files[value] ?? value;
  return {
    ...deployed,
    upstream: mesh.istiod.secureGrpc, caUpstream: mesh.istiod.secureGrpc, upstreamServerName: ISTIOD_SERVER_NAME,
    upstreamCaFile: rewritten(deployed.upstreamCaFile), tlsCertFile: rewritten(deployed.tlsCertFile), tlsKeyFile: rewritten(deployed.tlsKeyFile),
    tlsClientCaFile: rewritten(deployed.tlsClientCaFile), tlsListen: '127.0.0.1:0', adminListen: '127.0.0.1:0',
    kubeconfig: mesh.kube.kubeconfig, stateDir: state, cacheSnapshotDir: path.join(state, 'snapshots'),
    instanceId: 'meshrelay-deployed', shutdownGraceSeconds: 1, readinessDrainSeconds: 0,
  };
}

/** What the rewrite relies on: the deployed config names istiod by its service and these files. */
function assertDeployedShape(config: ServeConfig, istiodService: string, files: string[]): void {
  const named = [config.upstreamCaFile, config.tlsCertFile, config.tlsKeyFile, config.tlsClientCaFile];
  if (config.upstream !== istiodService || config.caUpstream !== istiodService || named.some((file) => !files.includes(file))) {
    throw new Error(`deploy/base's config changed shape (upstream ${config.upstream}, files ${named.join(', ')}): update this test's rewrite`);
  }
}

interop('the relay running deploy/base\'s config serves a token-authenticated VM and a certificate-authenticated VM their istiod config, byte for byte', async (t) => {
  t.timeout(120_000);
  const relay = await relayFor(t, mesh, 'group', await deployedConfig());
  const target = relayTlsAddress(relay);
  const token = await mesh.token('vm', 'vm-sa');
  const tokenVm = realVmNode({ name: 'vm-deployed-token', ip: '10.9.6.1' });
  const viaToken = new ConfigProxy(target, 'delta', tokenVm, { client: relayTlsClient(mesh, target), headers: { authorization: `Bearer ${token}`, clusterid: 'Kubernetes' } });
  t.teardown(() => viaToken.close());
  await assertSameConfig(t, await directProxy(t, mesh, tokenVm, 'delta'), viaToken);
  // A VM whose token is gone: its workload certificate (issued by istiod through the relay) is all it presents.
  const certVm = realVmNode({ name: 'vm-deployed-cert', ip: '10.9.6.2', labels: { app: 'vmapp', credential: 'certificate' } });
  const viaCertificate = new ConfigProxy(target, 'delta', certVm, { client: relayTlsClient(mesh, target, await workloadCertificate(mesh, target)), headers: { clusterid: 'Kubernetes' } });
  t.teardown(() => viaCertificate.close());
  await assertSameConfig(t, await directProxy(t, mesh, certVm, 'delta'), viaCertificate);
  const certificateGroup = relay.groups.list().find((group) => group.members.size === 1 && group.credentials.summary().inUse === 'certificate');
  t.truthy(certificateGroup, 'the certificate VM\'s group reached istiod with XFCC');
});
