import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { freePort } from '../../bench/free-port.js';
import { stopProcess } from '../../bench/stop-process.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
/** Where scripts/build-test-peers.sh puts the Go-built peers. */
export const peersDirectory = path.join(root, '.cache/peers');
export const kubeApiServerBinary = path.join(peersDirectory, 'kube-apiserver-for-tests');
export const kubectlBinary = path.join(peersDirectory, 'kubectl');

/** Why the real kube-apiserver tests cannot run here, or undefined when they can. */
export function kubeApiServerUnavailable(): string | undefined {
  if (existsSync(kubeApiServerBinary)) return undefined;
  return 'real kube-apiserver not built (needs Go and its module proxy): run scripts/build-test-peers.sh';
}

export interface KubeApiServer {
  url: string;
  /** A kubeconfig with a cluster-admin token, as the relay would be given. */
  kubeconfig: string;
  /** A request as cluster admin; `contentType` for patches (JSON by default). */
  request(method: string, apiPath: string, body?: unknown, contentType?: string): Promise<any>;
  /** A service-account token from the TokenRequest API. */
  token(namespace: string, serviceAccount: string, audiences: string[]): Promise<string>;
  /** Installs the Istio CRDs the relay uses (test/kube-apiserver/istio-crds.yaml) and waits until they are served. */
  installIstioCrds(): Promise<void>;
  restart(): Promise<void>;
  close(): Promise<void>;
}

/** A real kube-apiserver (with embedded etcd) on loopback, with service-account issuer keys. */
export async function startKubeApiServer(): Promise<KubeApiServer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'kube-apiserver-'));
  execFileSync('openssl', ['genrsa', '-out', path.join(dir, 'sa.key'), '2048'], { stdio: 'ignore' });
  writeFileSync(path.join(dir, 'tokens.csv'), 'admin-token,admin,admin,system:masters\n');
  const [port, etcdClient, etcdPeer] = [await freePort(), await freePort(), await freePort()];
  const url = `https://127.0.0.1:${port}`;
  const args = [
    '--data-dir', path.join(dir, 'data'), '--etcd-client-port', String(etcdClient), '--etcd-peer-port', String(etcdPeer), '--',
    `--secure-port=${port}`, '--bind-address=127.0.0.1', `--cert-dir=${path.join(dir, 'certs')}`,
    '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
    `--service-account-key-file=${path.join(dir, 'sa.key')}`, `--service-account-signing-key-file=${path.join(dir, 'sa.key')}`,
    '--api-audiences=https://kubernetes.default.svc.cluster.local,istio-ca',
    `--token-auth-file=${path.join(dir, 'tokens.csv')}`, '--authorization-mode=RBAC', '--service-cluster-ip-range=10.96.0.0/16',
  ];
  let child: ChildProcess | undefined;
  // The API server's certificate is self-signed for the test, so the test client does not verify it.
  const request = (method: string, apiPath: string, body?: unknown, contentType = 'application/json') => new Promise<any>((resolve, reject) => {
    const req = https.request(`${url}${apiPath}`, {
      method, rejectUnauthorized: false, headers: { authorization: 'Bearer admin-token', 'content-type': contentType },
    }, (response) => {
      let text = '';
      response.on('data', (chunk) => { text += chunk; });
      response.on('end', () => {
        if ((response.statusCode ?? 500) >= 300) reject(new Error(`${method} ${apiPath}: ${response.statusCode} ${text.slice(0, 300)}`));
        else resolve(text && text.trim().startsWith('{') ? JSON.parse(text) : text);
      });
    });
    req.on('error', reject);
    req.end(body ? JSON.stringify(body) : undefined);
  });
  const start = async () => {
    child = spawn(kubeApiServerBinary, args, { stdio: 'ignore' });
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        await request('GET', '/readyz');
        return;
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`kube-apiserver did not become ready: ${(error as Error).message}`);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
  };
  const stop = () => stopProcess(child, 5000);
  await start();
  const kubeconfig = path.join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, `apiVersion: v1
kind: Config
clusters: [{ name: test, cluster: { server: "${url}", insecure-skip-tls-verify: true } }]
users: [{ name: admin, user: { token: admin-token } }]
contexts: [{ name: test, context: { cluster: test, user: admin } }]
current-context: test
`);
  return {
    url, kubeconfig, request,
    token: async (namespace, serviceAccount, audiences) =>
      (await request('POST', `/api/v1/namespaces/${namespace}/serviceaccounts/${serviceAccount}/token`, { spec: { audiences, expirationSeconds: 3600 } })).status.token,
    installIstioCrds: async () => {
      const text = readFileSync(path.join(root, 'test/kube-apiserver/istio-crds.yaml'), 'utf8');
      for (const document of parseAllDocuments(text, { merge: true })) {
        await request('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', document.toJS()).catch((error: Error) => {
          if (!/: 409 /.test(error.message)) throw error;
        });
      }
      const deadline = Date.now() + 30_000;
      for (;;) {
        try {
          for (const plural of ['workloadentries', 'workloadgroups', 'gateways', 'virtualservices', 'serviceentries']) await request('GET', `/apis/networking.istio.io/v1/${plural}`);
          return;
        } catch (error) {
          if (Date.now() > deadline) throw error;
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      }
    },
    restart: async () => { await stop(); await start(); },
    close: stop,
  };
}

