import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { kubectlBinary } from './kube-apiserver.js';

export const repositoryRoot = path.resolve(path.dirname(kubectlBinary), '../..');

/** Why kubectl cannot run here, or undefined when it can. */
export function kubectlUnavailable(): string | undefined {
  return existsSync(kubectlBinary) ? undefined : 'kubectl not built (needs Go and its module proxy): run scripts/build-test-peers.sh';
}

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the test peer kubectl (never a kubectl from PATH, never the user's kubeconfig unless given). */
export function kubectl(args: string[], options: { kubeconfig?: string; input?: string } = {}): Promise<KubectlResult> {
  return new Promise((resolve) => {
    const child = execFile(kubectlBinary, [...(options.kubeconfig ? ['--kubeconfig', options.kubeconfig] : []), ...args], {
      cwd: repositoryRoot, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', KUBECONFIG: '/dev/null' }, maxBuffer: 16 << 20,
    }, (error, stdout, stderr) => resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }));
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/** `kubectl kustomize DIR`, parsed into objects. */
export async function renderKustomization(directory: string): Promise<any[]> {
  const { code, stdout, stderr } = await kubectl(['kustomize', directory]);
  if (code !== 0) throw new Error(`kubectl kustomize ${directory} failed: ${stderr}`);
  return parseAllDocuments(stdout).map((document) => document.toJS());
}
