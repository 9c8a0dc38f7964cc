import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { loadConfig } from '../../src/config/load.js';
import { serveSchema } from '../../src/config/schema.js';
import { caRig } from '../helpers/ca-rig.js';
import { eventually } from '../helpers/harness.js';
import { kubeApiServerUnavailable, startKubeApiServer, type KubeApiServer } from '../helpers/kube-apiserver.js';
import { kubectl, kubectlUnavailable, renderKustomization } from '../helpers/kubectl.js';
import { connectRegisteringVm, rigTarget } from '../helpers/registering-vm.js';

const noKubectl = kubectlUnavailable();
const noApiServer = noKubectl ?? kubeApiServerUnavailable();
const renderTest = noKubectl ? test.skip : test;
const apiTest = noApiServer ? test.skip : test.serial;
if (noApiServer) console.warn(`skipping the deploy/ tests that need them: ${noApiServer}`);

const BASE = 'deploy/base';
const OVERLAY = 'deploy/overlays/eastwest-gateway';
const byKind = (objects: any[], kind: string) => objects.filter((object) => object.kind === kind);

let api: KubeApiServer | undefined;
test.before(async () => {
  if (noApiServer) return;
  api = await startKubeApiServer();
  await api.installIstioCrds();
  await api.request('POST', '/api/v1/namespaces', { metadata: { name: 'istio-system' } });
});
test.after.always(async () => {
  await api?.close();
});

renderTest('the base renders to what a control-plane component needs, and its config file is a valid relay config', async (t) => {
  const objects = await renderKustomization(BASE);
  t.deepEqual(objects.map((o) => o.kind).sort(), [
    'ClusterRole', 'ClusterRoleBinding', 'ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'PodDisruptionBudget', 'Role', 'RoleBinding', 'Service', 'ServiceAccount',
  ]);
  for (const object of objects) if (object.kind !== 'ClusterRole' && object.kind !== 'ClusterRoleBinding') t.is(object.metadata.namespace, 'istio-system', object.kind);

  const [configMap] = byKind(objects, 'ConfigMap');
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'deploy-config-')), 'config.yaml');
  writeFileSync(file, configMap.data['config.yaml']);
  const config = loadConfig(serveSchema, ['--config', file], {});
  t.like(config, { tlsListen: ':15012', xdsListen: '', adminListen: ':15014', caMode: 'forward', autoRegistration: true, tokenReview: true, kubernetesTopology: true });

  const [deployment] = byKind(objects, 'Deployment');
  const pod = deployment.spec.template.spec;
  const [container] = pod.containers;
  // The generated ConfigMap's hashed name is what the pod mounts.
  t.is(pod.volumes.find((v: any) => v.name === 'config').configMap.name, configMap.metadata.name);
  t.true(pod.terminationGracePeriodSeconds >= config.shutdownGraceSeconds + 1, 'the pod is not killed before the relay has drained');
  t.deepEqual([container.readinessProbe.httpGet.path, container.livenessProbe.httpGet.path], ['/readyz', '/healthz']);
  t.deepEqual(container.ports.map((p: any) => [p.name, p.containerPort]), [['tls-xds', 15012], ['http-monitoring', 15014]]);
  t.like(pod.securityContext, { runAsNonRoot: true, runAsUser: 65532 });
  t.like(container.securityContext, { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
  t.is(container.env.find((e: any) => e.name === 'POD_NAME').valueFrom.fieldRef.fieldPath, 'metadata.name');
  // Every file the config names is mounted.
  const mounts: string[] = container.volumeMounts.map((m: any) => m.mountPath);
  for (const key of ['upstreamCaFile', 'tlsCertFile', 'tlsKeyFile', 'tlsClientCaFile', 'stateDir', 'cacheSnapshotDir'] as const) {
    t.true(mounts.some((mount) => (config[key] as string).startsWith(`${mount}/`) || config[key] === mount), `${key} ${config[key]} is mounted`);
  }
  const [service] = byKind(objects, 'Service');
  t.deepEqual(service.spec.ports.map((p: any) => [p.name, p.port]), [['tls-xds', 15012], ['http-monitoring', 15014]]);
});

renderTest('the overlay routes the east-west gateway\'s 15012 to the relay, like expose-istiod does for istiod', async (t) => {
  const objects = await renderKustomization(OVERLAY);
  const [gateway] = byKind(objects, 'Gateway');
  const [virtualService] = byKind(objects, 'VirtualService');
  t.deepEqual(gateway.spec.selector, { istio: 'eastwestgateway' });
  t.like(gateway.spec.servers[0], { port: { number: 15012, protocol: 'tls' }, tls: { mode: 'PASSTHROUGH' } });
  t.deepEqual(virtualService.spec.tls[0].route[0].destination, { host: 'meshrelay.istio-system.svc.cluster.local', port: { number: 15012 } });
  t.deepEqual(virtualService.spec.gateways, [gateway.metadata.name]);
  t.is(byKind(objects, 'Deployment').length, 1);
});

apiTest('the base and the overlay apply cleanly to a real kube-apiserver (server-side dry-run); a broken manifest does not', async (t) => {
  for (const directory of [BASE, OVERLAY]) {
    const result = await kubectl(['apply', '--dry-run=server', '-k', directory], { kubeconfig: api!.kubeconfig });
    t.is(result.code, 0, `${directory}: ${result.stderr}`);
    t.regex(result.stdout, /deployment\.apps\/meshrelay (created|configured) \(server dry run\)/);
  }
  const overlay = await kubectl(['apply', '--dry-run=server', '-k', OVERLAY], { kubeconfig: api!.kubeconfig });
  t.regex(overlay.stdout, /gateway\.networking\.istio\.io\/meshrelay-gateway created \(server dry run\)/);
  // The dry-run really validates: a Gateway whose port number is a string is refused.
  const broken = readFileSync(path.join(OVERLAY, 'gateway.yaml'), 'utf8').replace('number: 15012', 'number: "fifteen"');
  const refused = await kubectl(['apply', '--dry-run=server', '-n', 'istio-system', '-f', '-'], { kubeconfig: api!.kubeconfig, input: broken });
  t.not(refused.code, 0);
  t.regex(refused.stderr, /spec\.servers\[0\]\.port\.number/);
});

apiTest('the RBAC is enough for the relay\'s work and no more: with the meshrelay service account\'s own token it registers a VM', async (t) => {
  const objects = await renderKustomization(BASE);
  const rbac = objects.filter((o) => ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'].includes(o.kind));
  const applied = await kubectl(['apply', '-f', '-'], { kubeconfig: api!.kubeconfig, input: rbac.map((o) => JSON.stringify(o)).join('\n') });
  t.is(applied.code, 0, applied.stderr);
  const as = ['--as', 'system:serviceaccount:istio-system:meshrelay'];
  const can = async (...args: string[]) => (await kubectl(['auth', 'can-i', ...args, ...as], { kubeconfig: api!.kubeconfig })).stdout.trim();
  t.is(await can('create', 'workloadentries.networking.istio.io', '-n', 'vm'), 'yes');
  t.is(await can('update', 'workloadentries.networking.istio.io', '--subresource', 'status', '-n', 'vm'), 'yes');
  t.is(await can('create', 'tokenreviews.authentication.k8s.io'), 'yes');
  t.is(await can('list', 'configmaps', '-n', 'istio-system'), 'yes');
  t.is(await can('watch', 'serviceentries.networking.istio.io', '--all-namespaces'), 'yes', 'address-bound config (addressConfigSource: kubernetes)');
  t.is(await can('watch', 'endpointslices.discovery.k8s.io', '--all-namespaces'), 'yes');
  t.is(await can('list', 'configmaps', '-n', 'vm'), 'no');
  t.is(await can('create', 'workloadgroups.networking.istio.io', '-n', 'vm'), 'no');
  t.is(await can('get', 'secrets', '-n', 'istio-system'), 'no');
  t.is(await can('delete', 'pods', '-n', 'vm'), 'no');

  // The relay itself, holding only the meshrelay service account's token: it reviews the VM's
  // token, reads the WorkloadGroup, creates the entry and watches the topology.
  await api!.request('POST', '/api/v1/namespaces', { metadata: { name: 'vm' } });
  await api!.request('POST', '/api/v1/namespaces/vm/serviceaccounts', { metadata: { name: 'vm-sa' } });
  await api!.request('POST', '/apis/networking.istio.io/v1/namespaces/vm/workloadgroups', {
    apiVersion: 'networking.istio.io/v1', kind: 'WorkloadGroup', metadata: { name: 'vm-app' }, spec: { template: { ports: { http: 8080 } } },
  });
  const token = await api!.token('istio-system', 'meshrelay', ['https://kubernetes.default.svc.cluster.local']);
  const kubeconfig = path.join(mkdtempSync(path.join(tmpdir(), 'meshrelay-sa-')), 'kubeconfig');
  writeFileSync(kubeconfig, readFileSync(api!.kubeconfig, 'utf8').replace('token: admin-token', `token: ${token}`));
  const r = await caRig('ec-p256', {
    tlsListen: '127.0.0.1:0', tokenReview: true, kubeconfig, autoRegistration: true, kubernetesTopology: true, instanceId: 'meshrelay-0',
  });
  t.teardown(r.close);
  const vm = await connectRegisteringVm(rigTarget(r), api!);
  t.teardown(() => vm.close());
  await vm.next(10_000);
  const entry = await eventually(() => api!.request('GET', '/apis/networking.istio.io/v1/namespaces/vm/workloadentries/vm-app-172.16.0.5-vm-net').catch(() => undefined), (e) => e !== undefined, 10_000);
  t.is(entry.metadata.annotations['istio.io/workloadController'], 'meshrelay-0');
});
