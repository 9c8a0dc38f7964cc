import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from '../free-port.js';
import { stopProcess } from '../stop-process.js';

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

/** HAProxy's open files: two per proxied connection, plus its listeners, checks and logs. */
const MAXCONN_PER_PROCESS = 9000;

/**
 * HAProxy in TCP mode in front of relay replicas, as a Kubernetes Service or the east-west
 * gateway's passthrough spreads connections: least connections, a replica out of rotation while
 * its /readyz is not 200 (checked every 300 ms); connections already open are left alone.
 * One HAProxy process holds MAXCONN_PER_PROCESS connections here (two files each, under the
 * 20,000-file limit); `processes` of them share the port (HAProxy binds with SO_REUSEPORT, so the
 * kernel spreads new connections over them), as several gateway replicas would.
 */
export async function startHaproxy(backends: Backend[], options: { processes?: number } = {}): Promise<LoadBalancer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'haproxy-'));
  const port = await freePort();
  const instances = await Promise.all(Array.from({ length: options.processes ?? 1 }, (_, index) => startInstance(dir, index, port, backends)));
  const everywhere = (line: string) => Promise.all(instances.map((instance) => instance.command(line)));
  return {
    address: `127.0.0.1:${port}`,
    setEnabled: async (name, enabled) => { await everywhere(`${enabled ? 'enable' : 'disable'} server relays/${name}`); },
    servers: async () => {
      // `show stat` is CSV: pxname,svname,qcur,qmax,scur,...,status is field 17 (0-based).
      const byName = new Map<string, { name: string; status: string; sessions: number }>();
      for (const stat of await everywhere('show stat')) {
        for (const row of stat.split('\n').filter((line) => line.startsWith('relays,')).map((line) => line.split(','))) {
          if (row[1] === 'BACKEND') continue;
          const seen = byName.get(row[1]!);
          if (seen) seen.sessions += Number(row[4]);
          else byName.set(row[1]!, { name: row[1]!, sessions: Number(row[4]), status: row[17]! });
        }
      }
      return [...byName.values()];
    },
    close: async () => { await Promise.all(instances.map((instance) => stopProcess(instance.child, 2000))); },
  };
}

async function startInstance(dir: string, index: number, port: number, backends: Backend[]) {
  const socket = path.join(dir, `admin-${index}.sock`);
  const config = [
    'global',
    `  stats socket ${socket} mode 600 level admin`,
    `  maxconn ${MAXCONN_PER_PROCESS}`,
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
    // A check slower than 2 s (a replica busy with a storm) is not a failure; a replica marked down
    // keeps its connections, as a pod that is not ready does (a dead one's are closed by the kernel).
    '  timeout check 2s',
    '  default-server inter 300ms fall 1 rise 1',
    ...backends.map((b) => `  server ${b.name} 127.0.0.1:${b.port} check port ${b.adminPort}${b.enabled === false ? ' disabled' : ''}`),
    '',
  ].join('\n');
  const file = path.join(dir, `haproxy-${index}.cfg`);
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
  return { child, command };
}
