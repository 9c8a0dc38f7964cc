import { writeFileSync } from 'node:fs';
import { runCsrBench } from '../../bench/csr-bench.js';
import { htmlReport, passed, resultTable } from '../../bench/xds/report.js';
import { runXdsBench } from '../../bench/xds/xds-bench.js';
import type { TargetKind, XdsBenchOptions } from '../../bench/xds/xds-bench-types.js';
import { planFleet } from '../../bench/xds/fleet-layout.js';
import { loadConfig } from '../config/load.js';
import { benchAttackSchema, benchCompressionSchema, benchCsrSchema, benchReplicasSchema, benchXdsSchema } from '../config/schema.js';
import { runCompressionBench } from '../../bench/compression-bench.js';
import { attackTable, runAttackBench } from '../../bench/attack/attack-bench.js';
import { defaultToxiproxyBinary, parseLinkShape, ToxiproxyError } from '../../bench/link/toxiproxy.js';
import { RelayError } from '../errors.js';
import { replicaBenchPassed, replicaTable, runReplicaBench } from '../../bench/replicas/replica-bench.js';

async function csr(argv: string[]): Promise<void> {
  const config = loadConfig(benchCsrSchema, argv);
  const result = await runCsrBench({ concurrency: config.concurrency, seconds: config.seconds, caKeys: config.caKeys, csrKey: config.csrKey, relayCpuProfileDir: config.relayCpuProf,
    relayWorkers: config.relayWorkers, relayCpus: config.relayCpus, clientCpus: config.clientCpus });
  process.stdout.write(`${result.report}\n`);
  if (config.json) writeFileSync(config.json, `${JSON.stringify({ endToEnd: result.endToEnd, signing: result.signing }, null, 2)}\n`);
}

/** The pid behind an admin URL on this host (for CPU and memory), from its /healthz. */
async function pidOf(adminUrl: string): Promise<number | undefined> {
  const health = await (await fetch(`${adminUrl}/healthz`)).json() as { pid?: number };
  return health.pid;
}

async function xds(argv: string[]): Promise<void> {
  const config = loadConfig(benchXdsSchema, argv);
  // The baseline replays the simulated mesh, so it has no place in front of an upstream the bench did
  // not start, nor behind a link to one.
  const compared: TargetKind[] = config.upstreamTarget || config.link ? ['direct', 'group', 'stream'] : ['direct', 'group', 'stream', 'baseline'];
  const targets: TargetKind[] = config.target ? ['external'] : config.compare ? (config.targets.length > 0 ? config.targets : compared) : [config.mode];
  if (config.upstreamTarget && config.scenarios.some((s) => s !== 'connect')) {
    process.stderr.write(`bench: the upstream at ${config.upstreamTarget} is not the bench's to change: only the connect storm runs\n`);
  }
  const live = process.stderr.isTTY;
  let lastLine = 0;
  const { link, toxiproxy, workers, clientsPerAddress, timeoutSeconds, ...rest } = config;
  const fleet = planFleet(config.clients, { processes: workers, clientsPerAddress });
  const options: XdsBenchOptions = {
    ...rest,
    workers: fleet.processes,
    clientsPerAddress: fleet.clientsPerAddress,
    timeoutSeconds: timeoutSeconds ?? Math.max(120, config.clients * 0.005),
    targets,
    ...(link ? { link: { shape: linkShape(link), toxiproxy: toxiproxy || defaultToxiproxyBinary() } } : {}),
    ...(config.target ? { external: { target: config.target, ...(config.adminUrl ? { adminUrl: config.adminUrl, pid: await pidOf(config.adminUrl) } : {}) } } : {}),
    ...(config.upstreamTarget ? {
      upstream: { target: config.upstreamTarget, ...(config.upstreamPid ? { pid: config.upstreamPid } : {}), ...(config.upstreamKubeconfig ? { kubeconfig: config.upstreamKubeconfig } : {}) },
    } : {}),
    relayCpuProfileDir: config.relayCpuProf,
    onProgress: (line) => {
      // One rewritten line on a terminal; a line every 5 s in logs.
      if (live) process.stderr.write(`\r${line.padEnd(150).slice(0, 150)}`);
      else if (Date.now() - lastLine > 5000) {
        lastLine = Date.now();
        process.stderr.write(`${line}\n`);
      }
    },
  };
  const results = await runXdsBench(options);
  if (live) process.stderr.write('\n');
  process.stdout.write(`${resultTable(results, options)}\n`);
  const command = `meshrelay bench ${argv.join(' ')}`;
  if (config.json) writeFileSync(config.json, `${JSON.stringify({ command, options: config, results }, null, 2)}\n`);
  if (config.report) writeFileSync(config.report, htmlReport(results, options, command));
  if (!passed(results)) process.exitCode = 1;
}

function linkShape(text: string) {
  try {
    return parseLinkShape(text);
  } catch (error) {
    if (error instanceof ToxiproxyError) throw new RelayError('MR_BAD_CONFIG', `invalid link: ${error.message}`);
    throw error;
  }
}

async function attack(argv: string[]): Promise<void> {
  const config = loadConfig(benchAttackSchema, argv);
  const results = await runAttackBench({ ...config, serveArgs: config.serveArgs.split(/\s+/).filter(Boolean) });
  process.stdout.write(`${attackTable(results)}\n`);
  if (config.json) writeFileSync(config.json, `${JSON.stringify({ command: `meshrelay bench attack ${argv.join(' ')}`, results }, null, 2)}\n`);
}

function compression(argv: string[]): void {
  const config = loadConfig(benchCompressionSchema, argv);
  const result = runCompressionBench(config.profiles, config.rounds);
  process.stdout.write(`${result.report}\n`);
  if (config.json) writeFileSync(config.json, `${JSON.stringify({ command: `meshrelay bench compression ${argv.join(' ')}`, figures: result.figures }, null, 2)}\n`);
}

async function replicas(argv: string[]): Promise<void> {
  const config = loadConfig(benchReplicasSchema, argv);
  const { workers, clientsPerAddress, timeoutSeconds, upstreamTarget, upstreamPid, upstreamKubeconfig, json, ...rest } = config;
  const fleet = planFleet(config.clients, { processes: workers, clientsPerAddress });
  const result = await runReplicaBench({
    ...rest, workers: fleet.processes, clientsPerAddress: fleet.clientsPerAddress, timeoutSeconds: timeoutSeconds ?? Math.max(120, config.clients * 0.01),
    upstream: { target: upstreamTarget, kubeconfig: upstreamKubeconfig, ...(upstreamPid ? { pid: upstreamPid } : {}) },
    onProgress: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(`${replicaTable(result)}\n`);
  if (json) writeFileSync(json, `${JSON.stringify({ command: `meshrelay bench replicas ${argv.join(' ')}`, result }, null, 2)}\n`);
  if (!replicaBenchPassed(result)) process.exitCode = 1;
}

/**
 * `meshrelay bench [flags]`: simulated VM Envoys (xDS); `meshrelay bench csr [flags]`: the CA;
 * `meshrelay bench attack`: hostile loads; `meshrelay bench compression`: gzip on a relay link;
 * `meshrelay bench replicas`: replicas behind HAProxy, one killed (a real istiod behind them).
 */
export async function runBench(argv: string[]): Promise<void> {
  if (argv[0] === 'csr') await csr(argv.slice(1));
  else if (argv[0] === 'compression') compression(argv.slice(1));
  else if (argv[0] === 'attack') await attack(argv.slice(1));
  else if (argv[0] === 'replicas') await replicas(argv.slice(1));
  else await xds(argv[0] === 'xds' ? argv.slice(1) : argv);
}
