import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { peersDirectory } from './kube-apiserver.js';
import { repositoryRoot, type KubectlResult } from './kubectl.js';

export const helmBinary = path.join(peersDirectory, 'helm');
export const CHART = 'deploy/helm/meshrelay';

/** Why helm cannot run here, or undefined when it can. */
export function helmUnavailable(): string | undefined {
  return existsSync(helmBinary) ? undefined : 'helm not built (needs Go and its module proxy): run scripts/build-test-peers.sh';
}

/** Runs the test peer helm with no user configuration or repositories. */
export function helm(args: string[]): Promise<KubectlResult> {
  return new Promise((resolve) => {
    execFile(helmBinary, args, {
      cwd: repositoryRoot, maxBuffer: 16 << 20,
      env: { PATH: process.env.PATH ?? '', HOME: '/tmp', HELM_CACHE_HOME: '/tmp/helm-cache', HELM_CONFIG_HOME: '/tmp/helm-config', HELM_DATA_HOME: '/tmp/helm-data', KUBECONFIG: '/dev/null' },
    }, (error, stdout, stderr) => resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }));
  });
}

/** `helm template` of the chart into istio-system with `--set` values, parsed into objects. */
export async function renderChart(set: string[] = []): Promise<any[]> {
  const { code, stdout, stderr } = await helm(['template', 'meshrelay', CHART, '--namespace', 'istio-system', ...set.flatMap((value) => ['--set', value])]);
  if (code !== 0) throw new Error(`helm template failed: ${stderr}`);
  return parseAllDocuments(stdout).map((document) => document.toJS()).filter((object) => object);
}
