import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { parse } from 'yaml';
import { loadConfig } from '../../src/config/load.js';
import { serveSchema } from '../../src/config/schema.js';
import { CHART, helm, helmUnavailable, renderChart } from '../helpers/helm.js';
import { kubeApiServerUnavailable, startKubeApiServer } from '../helpers/kube-apiserver.js';
import { kubectl, kubectlUnavailable, renderKustomization } from '../helpers/kubectl.js';

const noHelm = helmUnavailable();
const noKubectl = noHelm ?? kubectlUnavailable();
const noApiServer = noKubectl ?? kubeApiServerUnavailable();
const helmTest = noHelm ? test.skip : test;
const compareTest = noKubectl ? test.skip : test;
const apiTest = noApiServer ? test.skip : test.serial;
if (noApiServer) console.warn(`skipping the Helm chart tests that need them: ${noApiServer}`);

const byKind = (objects: any[], kind: string) => objects.filter((object) => object.kind === kind);

/**
 * What a renderer adds that means nothing: kustomize's content hash on the ConfigMap's name, Helm's
 * checksum annotation (each makes a changed config roll the pods). The config file is compared
 * parsed, so comments and key order do not count.
 */
function normalized(objects: any[]): any[] {
  return objects.map((object) => {
    const copy = structuredClone(object);
    if (copy.kind === 'ConfigMap') {
      copy.metadata.name = copy.metadata.name.replace(/-[a-z0-9]{10}$/, '');
      copy.data['config.yaml'] = parse(copy.data['config.yaml']);
    }
    if (copy.kind === 'Deployment') {
      delete copy.spec.template.metadata.annotations['checksum/config'];
      for (const volume of copy.spec.template.spec.volumes) if (volume.configMap) volume.configMap.name = volume.configMap.name.replace(/^(meshrelay-config)-[a-z0-9]{10}$/, '$1');
    }
    return copy;
  }).sort((a, b) => `${a.kind}/${a.metadata.name}`.localeCompare(`${b.kind}/${b.metadata.name}`));
}

helmTest('helm lint passes on the chart', async (t) => {
  const result = await helm(['lint', CHART, '--namespace', 'istio-system']);
  t.is(result.code, 0, result.stdout + result.stderr);
  t.regex(result.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
});

compareTest('the chart with its default values renders the same objects as the kustomize base, and with eastWestGateway.enabled as the east-west overlay', async (t) => {
  const [chart, base] = await Promise.all([renderChart(), renderKustomization('deploy/base')]);
  t.deepEqual(normalized(chart), normalized(base));
  const [withGateway, overlay] = await Promise.all([renderChart(['eastWestGateway.enabled=true']), renderKustomization('deploy/overlays/eastwest-gateway')]);
  t.deepEqual(normalized(withGateway), normalized(overlay));
});

helmTest('non-default values: stream mode, local CA, three replicas without HPA or PDB, other secrets; the config file stays a valid relay config', async (t) => {
  const objects = await renderChart([
    'config.mode=stream', 'config.caMode=local', 'config.caDir=/var/run/secrets/cacerts', 'config.autoRegistration=false', 'replicas=3',
    'autoscaling.enabled=false', 'podDisruptionBudget.enabled=false', 'servingCertificateSecret=edge-serving', 'image.tag=0.2.0',
    'resources.limits.memory=4Gi',
  ]);
  t.deepEqual(byKind(objects, 'HorizontalPodAutoscaler'), []);
  t.deepEqual(byKind(objects, 'PodDisruptionBudget'), []);
  const [deployment] = byKind(objects, 'Deployment');
  t.is(deployment.spec.replicas, 3);
  const pod = deployment.spec.template.spec;
  t.is(pod.containers[0].image, 'ghcr.io/meshrelay/meshrelay:0.2.0');
  t.is(pod.containers[0].resources.limits.memory, '4Gi');
  t.is(pod.volumes.find((volume: any) => volume.name === 'serving-cert').secret.secretName, 'edge-serving');
  const [configMap] = byKind(objects, 'ConfigMap');
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'helm-config-')), 'config.yaml');
  writeFileSync(file, configMap.data['config.yaml']);
  t.like(loadConfig(serveSchema, ['--config', file], {}), { mode: 'stream', caMode: 'local', caDir: '/var/run/secrets/cacerts', autoRegistration: false, tlsListen: ':15012' });
  t.not(deployment.spec.template.metadata.annotations['checksum/config'], (await renderChart()).find((o) => o.kind === 'Deployment').spec.template.metadata.annotations['checksum/config'], 'a changed config rolls the pods');
});

apiTest('the chart\'s objects apply cleanly to a real kube-apiserver (server-side dry-run), with default and non-default values', async (t) => {
  const api = await startKubeApiServer();
  t.teardown(() => api.close());
  await api.request('POST', '/api/v1/namespaces', { metadata: { name: 'istio-system' } });
  for (const set of [[], ['autoscaling.enabled=false', 'replicas=1']]) {
    const { stdout } = await helm(['template', 'meshrelay', CHART, '--namespace', 'istio-system', ...set.flatMap((value) => ['--set', value])]);
    const result = await kubectl(['apply', '--dry-run=server', '-f', '-'], { kubeconfig: api.kubeconfig, input: stdout });
    t.is(result.code, 0, result.stderr);
    t.regex(result.stdout, /deployment\.apps\/meshrelay created \(server dry run\)/);
  }
});
