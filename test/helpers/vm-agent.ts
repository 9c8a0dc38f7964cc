import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { freePort } from '../../bench/free-port.js';
import { stopProcess } from '../../bench/stop-process.js';
import { ISTIOD_SERVER_NAME, istioPeers, type RealMesh } from './real-istio.js';

export interface VmFiles {
  directory: string;
  clusterEnv: Record<string, string>;
}

/** `istioctl x workload entry configure` for the WorkloadGroup, exactly as an operator runs it for a new VM. */
export async function configureVm(mesh: RealMesh, options: { group: string; namespace: string; internalIp: string; autoRegister?: boolean }): Promise<VmFiles> {
  const directory = mkdtempSync(path.join(tmpdir(), 'vm-files-'));
  const args = [
    'x', 'workload', 'entry', 'configure', '--name', options.group, '-n', options.namespace, '-o', directory,
    '--clusterID', 'Kubernetes', '--kubeconfig', mesh.kube.kubeconfig, '--ingressIP', '127.0.0.1',
    '--internalIP', options.internalIp, '--capture-dns=false', ...(options.autoRegister ? ['--autoregister'] : []),
  ];
  await new Promise<void>((resolve, reject) => {
    execFile(istioPeers.istioctl, args, { env: { PATH: process.env.PATH ?? '', HOME: directory } }, (error, _stdout, stderr) => (error ? reject(new Error(`istioctl: ${stderr}`)) : resolve()));
  });
  const clusterEnv: Record<string, string> = {};
  for (const line of readFileSync(path.join(directory, 'cluster.env'), 'utf8').split('\n')) {
    const match = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (match) clusterEnv[match[1]!] = match[2]!.replace(/^'(.*)'$/, '$1');
  }
  return { directory, clusterEnv };
}

export interface VmAgent {
  /** The agent's working directory (the VM's `/`). */
  root: string;
  /** Envoy's ADS socket, served by the agent's xDS proxy. */
  xdsTarget: string;
  /** The agent's SDS socket. */
  sdsTarget: string;
  /** The node the agent wrote into Envoy's bootstrap (what Envoy would send). */
  envoyNode(): any;
  log(): string;
  close(): Promise<void>;
}

/**
 * Envoy is not installable here: this stand-in keeps the agent's Envoy process alive so the agent
 * runs its SDS server and xDS proxy, while a test client plays Envoy on the agent's sockets. Its
 * admin port (from the bootstrap the agent renders) answers the stats the agent's readiness and
 * WorkloadGroup health checks read (pilot/cmd/pilot-agent/status/util/stats.go) as an Envoy that
 * accepted its first config would: the test client takes that config.
 */
const STAND_IN_ENVOY = `#!${process.execPath}
const { readFileSync } = require('node:fs');
const http = require('node:http');
const bootstrap = JSON.parse(readFileSync(process.argv[process.argv.indexOf('-c') + 1], 'utf8'));
const stats = ['cluster_manager.cds.update_success: 1', 'cluster_manager.cds.update_rejected: 0',
  'listener_manager.lds.update_success: 1', 'listener_manager.lds.update_rejected: 0',
  'server.state: 0', 'listener_manager.workers_started: 1'].join('\\n') + '\\n';
const admin = http.createServer((request, response) => response.end(request.url.startsWith('/stats') ? stats : 'LIVE\\n'));
admin.listen(bootstrap.admin.address.socket_address.port_value, '127.0.0.1');
const parent = process.ppid;
const alive = () => { try { process.kill(parent, 0); return true; } catch { return false; } };
setInterval(() => { if (!alive()) process.exit(0); }, 1000);
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
`;

/**
 * pilot-agent started as istio-start.sh starts it on a VM: the files istioctl wrote in their places
 * under a root directory (the agent resolves ./etc/certs, ./var/run/secrets/tokens against its
 * working directory), the discovery address at `pilotAddress`, ISTIOD_SAN for the server name (the
 * VM's /etc/hosts entry cannot be written here), and a stand-in Envoy binary.
 */
export async function startVmAgent(files: VmFiles, pilotAddress: string, extraEnv: Record<string, string> = {}, previousRoot?: string): Promise<VmAgent> {
  // A restarted agent keeps its VM's files, and the certificates it wrote there (OUTPUT_CERTS).
  const root = previousRoot ?? mkdtempSync(path.join(tmpdir(), 'vm-root-'));
  const place = (from: string, to: string) => {
    mkdirSync(path.dirname(path.join(root, to)), { recursive: true });
    copyFileSync(path.join(files.directory, from), path.join(root, to));
  };
  place('root-cert.pem', 'etc/certs/root-cert.pem');
  if (!previousRoot) place('istio-token', 'var/run/secrets/tokens/istio-token');
  place('mesh.yaml', 'etc/istio/config/mesh');
  const bootstrapTemplate = path.join(path.dirname(istioPeers.agent), 'envoy_bootstrap.json');
  mkdirSync(path.join(root, 'var/lib/istio/envoy'), { recursive: true });
  copyFileSync(bootstrapTemplate, path.join(root, 'var/lib/istio/envoy/envoy_bootstrap_tmpl.json'));
  const envoy = path.join(root, 'stand-in-envoy');
  writeFileSync(envoy, STAND_IN_ENVOY);
  chmodSync(envoy, 0o755);
  const [statusPort, adminPort] = [await freePort(), await freePort()];
  const proxyConfig = {
    discoveryAddress: pilotAddress, binaryPath: envoy, statusPort, proxyAdminPort: adminPort,
    configPath: path.join(root, 'etc/istio/proxy'), serviceCluster: files.clusterEnv.ISTIO_SERVICE ?? 'vm',
    controlPlaneAuthPolicy: 'MUTUAL_TLS',
  };
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '', HOME: root,
    ...files.clusterEnv,
    // CA_ADDR stays unset (istio-start.sh would set it from PILOT_ADDRESS): the agent then sends
    // CSRs to the discovery address and verifies it with ISTIOD_SAN, standing in for /etc/hosts.
    PILOT_ADDRESS: pilotAddress, ISTIOD_SAN: ISTIOD_SERVER_NAME,
    PROV_CERT: './etc/certs', OUTPUT_CERTS: './etc/certs',
    INSTANCE_IP: files.clusterEnv.ISTIO_SVC_IP ?? '', POD_NAME: 'vm-host', POD_NAMESPACE: files.clusterEnv.POD_NAMESPACE ?? '',
    PROXY_CONFIG: stringify(proxyConfig),
    // No DNS capture, no debug port: several agents share this machine's loopback.
    ISTIO_META_DNS_CAPTURE: 'false', PROXY_XDS_DEBUG_VIA_AGENT: 'false',
    ...extraEnv,
  };
  const logFile = path.join(root, 'istio.log');
  // Output straight to a file, not through pipes: Envoy (the stand-in) inherits the agent's stdio,
  // and a pipe it held would keep the test process alive.
  const out = openSync(logFile, 'a');
  const child: ChildProcess = spawn(istioPeers.agent, ['proxy', 'sidecar'], { cwd: root, env, stdio: ['ignore', out, out] });
  closeSync(out);
  const log = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
  const bootstrapFile = path.join(root, 'etc/istio/proxy/envoy-rev.json');
  const xdsSocket = path.join(root, 'etc/istio/proxy/XDS');
  rmSync(bootstrapFile, { force: true });
  const deadline = Date.now() + 60_000;
  while (!existsSync(bootstrapFile) || !existsSync(xdsSocket)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`pilot-agent did not start (exit ${child.exitCode}):\n${log().split('\n').slice(-40).join('\n')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return {
    root,
    xdsTarget: `unix://${xdsSocket}`,
    sdsTarget: `unix://${path.join(root, 'var/run/secrets/workload-spiffe-uds/socket')}`,
    envoyNode: () => JSON.parse(readFileSync(bootstrapFile, 'utf8')).node,
    log,
    close: () => stopProcess(child, 5000),
  };
}
