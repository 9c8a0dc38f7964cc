import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { stringify } from 'yaml';
import { createDevCa } from '../../src/ca/dev-ca.js';
import { freePort } from '../../bench/free-port.js';
import { kubeApiServerUnavailable, peersDirectory, startKubeApiServer, type KubeApiServer } from './kube-apiserver.js';
import { stopProcess } from '../../bench/stop-process.js';
import { kubectl, kubectlUnavailable } from './kubectl.js';

export const istioPeers = {
  discovery: path.join(peersDirectory, 'pilot-discovery'),
  agent: path.join(peersDirectory, 'pilot-agent'),
  istioctl: path.join(peersDirectory, 'istioctl'),
  crds: path.join(peersDirectory, 'istio-crds-all.yaml'),
};

/** The Istio version the peers were built at (scripts/build-test-peers.sh writes it beside each binary). */
export function istioVersion(): string {
  return existsSync(`${istioPeers.discovery}.version`) ? readFileSync(`${istioPeers.discovery}.version`, 'utf8').trim() : 'unknown';
}

/** Why the real-Istio tests cannot run here, or undefined when they can. */
export function realIstioUnavailable(...needs: Array<keyof typeof istioPeers>): string | undefined {
  const missing = kubeApiServerUnavailable() ?? kubectlUnavailable();
  if (missing) return missing;
  for (const need of ['discovery', 'crds', ...needs] as const) {
    if (!existsSync(istioPeers[need])) {
      return `${path.basename(istioPeers[need])} not built (needs Go and its module proxy to build istio.io/istio): run scripts/build-test-peers.sh`;
    }
  }
  return undefined;
}

/** The server name istiod's own serving certificate carries (what VMs verify on 15012). */
export const ISTIOD_SERVER_NAME = 'istiod.istio-system.svc';
export const EAST_WEST_GATEWAY = { address: '192.0.2.10', port: 15443 };

/**
 * The shape of the multi-network VM setups the relay serves: the cluster on `net1` behind an
 * east-west gateway on 15443, VMs on `vm-net`. istiod reads meshNetworks from the `istio` ConfigMap
 * (as istioctl's `x workload entry configure` does too).
 */
export function meshNetworksFor(gatewayAddress: string): Record<string, unknown> {
  return {
    networks: {
      net1: { endpoints: [{ fromRegistry: 'Kubernetes' }], gateways: [{ address: gatewayAddress, port: EAST_WEST_GATEWAY.port }] },
      'vm-net': { endpoints: [{ fromCidr: '10.9.0.0/16' }], gateways: [] },
    },
  };
}

const meshConfig = {
  trustDomain: 'cluster.local',
  rootNamespace: 'istio-system',
  defaultConfig: { discoveryAddress: `${ISTIOD_SERVER_NAME}:15012`, meshId: 'mesh1' },
};

export interface IstiodAddresses {
  /** Plaintext xDS (15010): istiod does not authenticate streams here. */
  grpc: string;
  /** TLS xDS and CA (15012), serving a certificate for istiod.istio-system.svc from the plugged CA. */
  secureGrpc: string;
  /** HTTP debug endpoints (8080): /ready, /debug/syncz, /debug/config_dump. */
  http: string;
  monitoring: string;
  webhook: string;
}

export interface RealMesh {
  kube: KubeApiServer;
  istiod: IstiodAddresses;
  /** The plugged CA's root certificate (what VMs trust), as a file and as PEM. */
  rootCertFile: string;
  rootCertPem: Buffer;
  /** The plugged CA directory (root-cert.pem, ca-cert.pem, ca-key.pem, cert-chain.pem). */
  caDir: string;
  /** `kubectl apply --server-side` of objects (YAML text or objects). */
  apply(objects: string | object[]): Promise<void>;
  delete(objects: string | object[]): Promise<void>;
  /** A TokenRequest token for a service account, audience `istio-ca` unless told otherwise. */
  token(namespace: string, serviceAccount: string, audiences?: string[]): Promise<string>;
  /** A serving certificate for istiod's name from the mesh CA, made with openssl as an operator would (for the relay's TLS listener). */
  relayServingCertificate(): { cert: string; key: string };
  /** A gRPC client for istiod's 15012 that verifies istiod's certificate as a VM does. */
  secureClient(): grpc.Client;
  /** GET from istiod's HTTP debug port, parsed as JSON. */
  debug(pathAndQuery: string): Promise<any>;
  restartIstiod(): Promise<void>;
  /** istiod's process id (for /proc CPU and memory readings). */
  istiodPid(): number | undefined;
  /** What istiod printed, for failure messages. */
  istiodLog(): string;
  close(): Promise<void>;
}

export interface RealMeshOptions {
  /** istiod's TRUSTED_GATEWAY_CIDR: lets it take x-forwarded-client-cert from peers in that range. */
  trustedGatewayCidr?: string;
  /** Further istiod environment (feature flags). */
  env?: Record<string, string>;
}

/**
 * A real Istio control plane on loopback: kube-apiserver (embedded etcd) with Istio's CRDs, the
 * `istio` ConfigMap (mesh config and meshNetworks), and pilot-discovery with a plugged CA, XDS
 * authentication on (its default) and every port on 127.0.0.1.
 */
export async function startRealMesh(options: RealMeshOptions = {}): Promise<RealMesh> {
  const kube = await startKubeApiServer();
  const dir = mkdtempSync(path.join(tmpdir(), 'real-istio-'));
  try {
    const run = async (args: string[], input?: string) => {
      const result = await kubectl(args, { kubeconfig: kube.kubeconfig, ...(input !== undefined ? { input } : {}) });
      if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${result.stderr || result.stdout}`);
      return result.stdout;
    };
    const toYaml = (objects: string | object[]) => (typeof objects === 'string' ? objects : objects.map((o) => stringify(o)).join('---\n'));
    const apply = async (objects: string | object[]) => { await run(['apply', '--server-side', '--force-conflicts', '-f', '-'], toYaml(objects)); };
    const remove = async (objects: string | object[]) => { await run(['delete', '--ignore-not-found', '--wait=false', '-f', '-'], toYaml(objects)); };
    await run(['apply', '--server-side', '-f', istioPeers.crds]);
    await run(['wait', '--for=condition=Established', '--timeout=60s', 'crd', '--all']);
    await apply([
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'istio-system' } },
      {
        apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'istio', namespace: 'istio-system' },
        data: { mesh: stringify(meshConfig), meshNetworks: stringify(meshNetworksFor(EAST_WEST_GATEWAY.address)) },
      },
    ]);
    const caDir = path.join(dir, 'cacerts');
    createDevCa(caDir, { organization: 'meshrelay-real-istio-test' });
    // istiod cannot listen on port 0: ports are picked free, and picked again if another process
    // took one before istiod bound it (two test files start meshes side by side).
    const istiod = {} as IstiodAddresses;
    const pickPorts = async () => {
      const [grpcPort, securePort, httpPort, monitoringPort, webhookPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
      Object.assign(istiod, {
        grpc: `127.0.0.1:${grpcPort}`, secureGrpc: `127.0.0.1:${securePort}`, http: `127.0.0.1:${httpPort}`,
        monitoring: `127.0.0.1:${monitoringPort}`, webhook: `127.0.0.1:${webhookPort}`,
      });
    };
    const args = () => [
      'discovery', '--kubeconfig', kube.kubeconfig, '--grpcAddr', istiod.grpc, '--secureGRPCAddr', istiod.secureGrpc,
      '--httpAddr', istiod.http, '--httpsAddr', istiod.webhook, '--monitoringAddr', istiod.monitoring,
      '--meshConfig', path.join(dir, 'no-mesh-file'), '--networksConfig', path.join(dir, 'no-networks-file'),
      '--log_output_level', 'default:info',
    ];
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '', HOME: dir,
      POD_NAMESPACE: 'istio-system', POD_NAME: 'istiod-test', REVISION: 'default',
      ROOT_CA_DIR: caDir, PILOT_CERT_PROVIDER: 'istiod', CLUSTER_ID: 'Kubernetes',
      // Nothing injects or validates here: no webhook configurations to patch.
      INJECTION_WEBHOOK_CONFIG_NAME: '', VALIDATION_WEBHOOK_CONFIG_NAME: '',
      ...(options.trustedGatewayCidr ? { TRUSTED_GATEWAY_CIDR: options.trustedGatewayCidr } : {}),
      ...options.env,
    };
    let child: ChildProcess | undefined;
    const logFile = path.join(dir, 'istiod.log');
    const debug = (pathAndQuery: string) => getJson(`http://${istiod.http}${pathAndQuery}`);
    const start = async () => {
      const out = openSync(logFile, 'a');
      child = spawn(istioPeers.discovery, args(), { cwd: dir, env, stdio: ['ignore', out, out] });
      closeSync(out);
      const deadline = Date.now() + 120_000;
      for (;;) {
        if (child.exitCode !== null) throw new Error(`istiod exited with ${child.exitCode}:\n${tail(logFile)}`);
        if (await getStatus(`http://${istiod.http}/ready`) === 200) return;
        if (Date.now() > deadline) throw new Error(`istiod did not become ready:\n${tail(logFile)}`);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    };
    const stop = () => stopProcess(child, 3000);
    for (let attempt = 1; ; attempt++) {
      await pickPorts();
      try {
        await start();
        break;
      } catch (error) {
        if (attempt === 3 || !/address already in use/.test((error as Error).message)) throw error;
      }
    }
    const rootCertFile = path.join(caDir, 'root-cert.pem');
    const rootCertPem = readFileSync(rootCertFile);
    return {
      kube, istiod, rootCertFile, rootCertPem, caDir, apply, delete: remove, debug,
      token: (namespace, serviceAccount, audiences = ['istio-ca']) => kube.token(namespace, serviceAccount, audiences),
      secureClient: () => new grpc.Client(istiod.secureGrpc, grpc.credentials.createSsl(rootCertPem), {
        'grpc.ssl_target_name_override': ISTIOD_SERVER_NAME, 'grpc.use_local_subchannel_pool': 1,
      }),
      relayServingCertificate: () => servingCertificate(caDir),
      restartIstiod: async () => { await stop(); await start(); },
      istiodPid: () => child?.pid,
      istiodLog: () => tail(logFile),
      close: async () => { await stop(); await kube.close(); },
    };
  } catch (error) {
    await kube.close();
    throw error;
  }
}

function servingCertificate(caDir: string): { cert: string; key: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'relay-serving-'));
  const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  writeFileSync(path.join(dir, 'ext'), `subjectAltName=DNS:${ISTIOD_SERVER_NAME}\nextendedKeyUsage=serverAuth\n`);
  run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'key.pem', '-out', 'csr.pem', '-subj', '/O=meshrelay']);
  run(['x509', '-req', '-in', 'csr.pem', '-CA', path.join(caDir, 'ca-cert.pem'), '-CAkey', path.join(caDir, 'ca-key.pem'), '-CAcreateserial', '-out', 'leaf.pem', '-days', '1', '-extfile', 'ext']);
  writeFileSync(path.join(dir, 'chain.pem'), readFileSync(path.join(dir, 'leaf.pem'), 'utf8') + readFileSync(path.join(caDir, 'ca-cert.pem'), 'utf8'));
  return { cert: path.join(dir, 'chain.pem'), key: path.join(dir, 'key.pem') };
}

function tail(file: string, lines = 60): string {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n') : '';
}

function getStatus(url: string): Promise<number> {
  return new Promise((resolve) => {
    http.get(url, (response) => { response.resume(); resolve(response.statusCode ?? 0); }).on('error', () => resolve(0));
  });
}

function getJson(url: string): Promise<any> {
  return new Promise((resolve, reject) => {
    http.get(url, (response) => {
      let text = '';
      response.on('data', (chunk) => { text += chunk; });
      response.on('end', () => {
        if ((response.statusCode ?? 500) >= 300) reject(new Error(`GET ${url}: ${response.statusCode} ${text.slice(0, 300)}`));
        else resolve(JSON.parse(text));
      });
    }).on('error', reject);
  });
}
