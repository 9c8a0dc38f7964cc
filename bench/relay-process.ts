import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { withAllocatorEnv } from '../src/limits/memory-reclaimer.js';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src/cli/main.js');

export interface RelayProcess {
  /** The plaintext xDS address. */
  address: string;
  /** The admin base URL, when the admin port is on. */
  adminUrl: string | undefined;
  pid: number;
  stop(): Promise<void>;
}

/**
 * `meshrelay serve` as its own process (so its CPU and memory are its own, read from /proc), on
 * loopback ports it picks; resolves once it prints what it serves. `serveArgs` are serve's flags.
 */
export async function startRelayProcess(serveArgs: string[], options: { cpuProfileDir?: string; cpus?: string } = {}): Promise<RelayProcess> {
  const profiling = options.cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`] : [];
  const command = [process.execPath, ...profiling, cli, 'serve', '--xds-listen', '127.0.0.1:0', '--log-level', 'error', ...serveArgs];
  // taskset execs node in place (same pid); its workers inherit the CPU set, and count it as their cores.
  const [file, ...args] = options.cpus ? ['taskset', '-c', options.cpus, ...command] : command;
  // The allocator settings the image and the worker processes have: the relay as deployed.
  const child = spawn(file!, args, { stdio: ['ignore', 'pipe', 'inherit'], env: withAllocatorEnv(process.env) });
  const started = await new Promise<{ address: string; adminUrl: string | undefined }>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const xds = /xDS \(plaintext ADS, SotW \+ Delta\):\s+(\S+)/.exec(out);
      if (!xds || !/\n\s+upstream:/.test(out)) return;
      const admin = /admin:\s+(http:\/\/[^/\s]+)/.exec(out);
      resolve({ address: xds[1]!, adminUrl: admin?.[1] });
    });
    child.on('exit', (code) => reject(new Error(`relay exited with ${code}: ${out}`)));
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  return {
    ...started,
    pid: child.pid!,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Unlabelled samples of a relay's (or coordinator's) `/metrics`, by name; NaN for one it does not export. */
export async function relayMetrics<Name extends string>(adminUrl: string, names: readonly Name[]): Promise<Record<Name, number>> {
  const text = await adminGet(adminUrl, '/metrics', (response) => response.text());
  const out = {} as Record<Name, number>;
  for (const name of names) out[name] = Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN);
  return out;
}

/**
 * GETs a relay's admin page, saying which when it cannot be had: an admin port that stops answering
 * under load is a result the bench reports, not a stack trace.
 */
export async function adminGet<T>(adminUrl: string, path: string, read: (response: Response) => Promise<T>): Promise<T> {
  try {
    const response = await fetch(`${adminUrl}${path}`, { signal: AbortSignal.timeout(30_000) });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return await read(response);
  } catch (error) {
    throw new Error(`the relay's admin port did not answer ${path}: ${error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.message) : String(error)}`);
  }
}
