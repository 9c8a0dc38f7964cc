import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from '../../bench/free-port.js';
import { stopProcess } from './kube-apiserver.js';

/** Why the HAProxy tests cannot run here, or undefined (Debian's haproxy package, which .ci/run installs). */
export function haproxyUnavailable(): string | undefined {
  try {
    execFileSync('haproxy', ['-v'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'haproxy is not installed (apt-get install haproxy)';
  }
}

/** A relay replica as the load balancer knows it: its VM-facing TLS port and its admin port for /readyz. */
export interface Backend { name: string; port: number; adminPort: number; enabled?: boolean }

export interface LoadBalancer {
  /** Where VMs connect (as they would to the east-west gateway or the relay's Service). */
  address: string;
  /** Takes a declared backend into rotation (a new replica joining) or out of it (administratively). */
  setEnabled(name: string, enabled: boolean): Promise<void>;
  /** Each backend's state as HAProxy sees it (UP, DOWN, MAINT…) and its current sessions. */
  servers(): Promise<Array<{ name: string; status: string; sessions: number }>>;
  close(): Promise<void>;
}

/**
 * HAProxy in TCP mode in front of relay replicas, as a Kubernetes Service or the east-west
 * gateway's passthrough spreads connections: least connections, a replica out of rotation while
 * its /readyz is not 200 (checked every 300 ms), connections to a replica that went down closed.
 */
export async function startHaproxy(backends: Backend[]): Promise<LoadBalancer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'haproxy-'));
  const port = await freePort();
  const socket = path.join(dir, 'admin.sock');
  const config = [
    'global',
    `  stats socket ${socket} mode 600 level admin`,
    '  maxconn 9000',
    'defaults',
    '  mode tcp',
    '  timeout connect 2s',
    '  timeout client 1h',
    '  timeout server 1h',
    '  option redispatch',
    '  retries 3',
    'frontend vms',
    `  bind 127.0.0.1:${port}`,
    '  default_backend relays',
    'backend relays',
    '  balance leastconn',
    '  option httpchk GET /readyz',
    '  http-check expect status 200',
    '  default-server inter 300ms fall 1 rise 1 on-marked-down shutdown-sessions',
    ...backends.map((b) => `  server ${b.name} 127.0.0.1:${b.port} check port ${b.adminPort}${b.enabled === false ? ' disabled' : ''}`),
    '',
  ].join('\n');
  const file = path.join(dir, 'haproxy.cfg');
  writeFileSync(file, config);
  const child = spawn('haproxy', ['-f', file, '-db'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let errors = '';
  child.stderr!.on('data', (chunk: Buffer) => { errors = (errors + chunk.toString()).slice(-4000); });
  const command = (line: string) => new Promise<string>((resolve, reject) => {
    const connection = net.connect(socket);
    let out = '';
    connection.on('data', (chunk) => { out += chunk.toString(); });
    connection.on('end', () => resolve(out));
    connection.on('error', reject);
    connection.end(`${line}\n`);
  });
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`haproxy exited (${child.exitCode}): ${errors}`);
    if (await command('show info').then(() => true, () => false)) break;
    if (i > 100) throw new Error(`haproxy did not start: ${errors}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    address: `127.0.0.1:${port}`,
    setEnabled: async (name, enabled) => { await command(`${enabled ? 'enable' : 'disable'} server relays/${name}`); },
    servers: async () => {
      // `show stat` is CSV: pxname,svname,qcur,qmax,scur,...,status is field 17 (0-based).
      const rows = (await command('show stat')).split('\n').filter((line) => line.startsWith('relays,')).map((line) => line.split(','));
      return rows.filter((row) => row[1] !== 'BACKEND').map((row) => ({ name: row[1]!, sessions: Number(row[4]), status: row[17]! }));
    },
    close: () => stopProcess(child, 2000),
  };
}
