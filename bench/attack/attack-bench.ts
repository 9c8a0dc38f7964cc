/**
 * `meshrelay bench attack`: the hostile loads of docs/RELIABILITY.md replayed against a relay process
 * in front of the simulated istiod (300 services), while a healthy VM and fresh VMs are watched.
 * Reports, per attack: the relay's RSS before, at peak and after; the healthy VM's longest gap
 * between EDS updates (the upstream changes one endpoint every 250 ms); how new VMs fared; and how
 * the attacking streams ended.
 */
import { fork } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { createDevCa } from '../../src/ca/dev-ca.js';
import { DEV_ISSUER, ensureDevTokenIssuer, mintDevToken } from '../../src/ca/dev-token-issuer.js';
import { vmNode } from '../../src/sim/vm-node.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { RssSampler, rssBytes } from '../process-stats.js';
import { relayMetrics, startRelayProcess } from '../relay-process.js';
import { EnvoyClient, ResourceDecoder, type ClientEvents } from '../xds/envoy-client.js';
import { profileMesh } from '../xds/profiles.js';
import { startSim } from '../xds/bench-servers.js';
import { changeOneEndpoint } from '../xds/mesh-changes.js';
import type { Attack, AttackRun, AttackerCommand, AttackerMessage } from './attacker.js';


export interface AttackOptions {
  attacks: Attack[];
  /** Attacking streams (slow readers, partial messages) or CSRs. */
  streams: number;
  holdSeconds: number;
  /** Endpoints per service of the 300-service mesh (a quarter on the VMs' network, the rest behind its gateway). */
  endpointsPerService: number;
  /** Extra `meshrelay serve` flags (e.g. --max-buffered-mb 512). */
  serveArgs: string[];
  /** Where the relay writes its CPU profile ('' for none). */
  relayCpuProf: string;
}

export interface AttackResult {
  attack: Attack;
  rssBeforeMb: number;
  rssPeakMb: number;
  rssAfterMb: number;
  /** What of the RSS after is live: V8 heap in use, and memory outside it (Buffers); the rest is native (HTTP/2, the allocator). */
  heapAfterMb: number;
  externalAfterMb: number;
  healthyLongestGapMs: number;
  healthyUpdates: number;
  healthyErrors: number;
  /** New VMs during the attack: configured within the timeout or not, and what failed ones were told. */
  probes: { ok: number; failed: number; slowestMs: number; failures: string[] };
  /** How the attacking streams or calls ended: gRPC status name (or RST code) → count. */
  outcomes: Record<string, number>;
}

const EDS = TypeUrl.endpoint;
const CHURN_INTERVAL_MS = 250;
const PROBE_INTERVAL_MS = 2000;
const PROBE_TIMEOUT_MS = 10_000;
const MiB = 1024 * 1024;
const HEALTHY_VM = 'healthy';
const here = path.dirname(fileURLToPath(import.meta.url));

/**
 * Runs the attack in its own process; resolves once it is done, with how its streams ended.
 * `onStarted` marks the start of the measured window.
 */
function runAttacker(run: AttackRun, onStarted: () => void, restartUpstream: () => Promise<void>): Promise<Record<string, number>> {
  const child = fork(path.join(here, 'attacker.js'), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    child.on('message', (message: AttackerMessage) => {
      if (message.type === 'started') onStarted();
      else if (message.type === 'restart-upstream') void restartUpstream().then(() => child.send({ type: 'upstream-restarted' } satisfies AttackerCommand));
      else resolve(message.outcomes);
    });
    child.on('exit', (code: number | null) => reject(new Error(`the attacker exited (${code}) before it was done`)));
    child.send({ type: 'run', run } satisfies AttackerCommand);
  });
}

/** A VM Envoy that records every EDS update's arrival. */
function watchedVm(target: string, name: string, onUpdate: (ms: number) => void, onError: (message: string) => void): EnvoyClient {
  const events: ClientEvents = {
    configured: () => {},
    update: (_client, typeUrl, _stamp, receivedMs) => { if (typeUrl === EDS) onUpdate(receivedMs); },
    error: (_client, message) => onError(message),
  };
  return new EnvoyClient(0, target, 'delta', vmNode({ name }), false, new ResourceDecoder(), events);
}

async function untilConfigured(client: EnvoyClient, timeoutMs: number): Promise<number | undefined> {
  const started = performance.now();
  while (client.configuredAt === undefined) {
    if (performance.now() - started > timeoutMs) return undefined;
    await sleep(20);
  }
  return client.configuredAt - started;
}

async function runOne(attack: Attack, options: AttackOptions): Promise<AttackResult> {
  const base = mkdtempSync(path.join(tmpdir(), 'meshrelay-attack-'));
  let mesh = profileMesh('M', options.endpointsPerService);
  const sim = await startSim(mesh);
  createDevCa(path.join(base, 'ca'), { keyType: 'ec-p256' });
  const issuer = ensureDevTokenIssuer(path.join(base, 'issuer'));
  const relay = await startRelayProcess(['--upstream', sim.target, '--admin-listen', '127.0.0.1:0', '--state-dir', base,
    '--ca-mode', 'local', '--ca-dir', path.join(base, 'ca'), '--jwks-file', issuer.jwksFile, '--jwt-issuers', DEV_ISSUER, ...options.serveArgs], options.relayCpuProf ? { cpuProfileDir: options.relayCpuProf } : {});
  let step = 0;
  const churn = setInterval(() => { mesh = changeOneEndpoint(mesh, step++); void sim.apply(mesh); }, CHURN_INTERVAL_MS);
  const updates: number[] = [];
  let healthyErrors = 0;
  const healthy = watchedVm(relay.address, HEALTHY_VM, (ms) => updates.push(ms), () => healthyErrors++);
  healthy.connect();
  if (await untilConfigured(healthy, 30_000) === undefined) throw new Error('the healthy VM was never configured');
  const names = [...healthy.wanted(EDS)];
  await sleep(2000);
  const rssBefore = rssBytes(relay.pid);
  const sampler = new RssSampler(relay.pid);
  const probes = { ok: 0, failed: 0, slowestMs: 0, failures: [] as string[] };
  let probing = true;
  const probeLoop = (async () => {
    for (let index = 0; probing; index++) {
      const told: string[] = [];
      const probe = watchedVm(relay.address, `probe-${index}`, () => {}, (message) => told.push(message));
      probe.connect();
      const took = await untilConfigured(probe, PROBE_TIMEOUT_MS);
      probe.close();
      if (took === undefined) {
        probes.failed++;
        probes.failures.push(told.join('; ') || `nothing in ${PROBE_TIMEOUT_MS / 1000} s`);
      }
      else {
        probes.ok++;
        probes.slowestMs = Math.max(probes.slowestMs, took);
      }
      await sleep(PROBE_INTERVAL_MS);
    }
  })();
  let attackStart = Date.now();
  const outcomes = await runAttacker(
    { attack, target: relay.address, names, healthyNode: vmNode({ name: HEALTHY_VM }), token: mintDevToken(issuer, 'vm', 'vm-sa', 3600), streams: options.streams, holdSeconds: options.holdSeconds },
    () => { attackStart = Date.now(); },
    () => sim.restart!(1000),
  );
  const attackEnd = Date.now();
  probing = false;
  await probeLoop;
  await sleep(5000);
  const rssPeak = sampler.stop();
  const rssAfter = rssBytes(relay.pid);
  const live = await liveMemory(relay.adminUrl!);
  clearInterval(churn);
  const during = [attackStart, ...updates.filter((ms) => ms >= attackStart && ms <= attackEnd), attackEnd];
  let longestGap = 0;
  for (let index = 1; index < during.length; index++) longestGap = Math.max(longestGap, during[index]! - during[index - 1]!);
  healthy.close();
  await relay.stop();
  await sim.close();
  rmSync(base, { recursive: true, force: true });
  return {
    attack,
    rssBeforeMb: rssBefore / MiB,
    rssPeakMb: rssPeak / MiB,
    rssAfterMb: rssAfter / MiB,
    heapAfterMb: live.heapBytes / MiB,
    externalAfterMb: live.externalBytes / MiB,
    healthyLongestGapMs: longestGap,
    healthyUpdates: during.length - 2,
    healthyErrors,
    probes,
    outcomes,
  };
}

/** The relay's own account of its memory (summed over workers), from its metrics. */
async function liveMemory(adminUrl: string): Promise<{ heapBytes: number; externalBytes: number }> {
  const samples = await relayMetrics(adminUrl, ['nodejs_heap_size_used_bytes', 'nodejs_external_memory_bytes']);
  return { heapBytes: samples.nodejs_heap_size_used_bytes, externalBytes: samples.nodejs_external_memory_bytes };
}

export async function runAttackBench(options: AttackOptions): Promise<AttackResult[]> {
  const results: AttackResult[] = [];
  for (const attack of options.attacks) results.push(await runOne(attack, options));
  return results;
}

export function attackTable(results: AttackResult[]): string {
  const rows = results.map((r) => [
    r.attack, r.rssBeforeMb.toFixed(0), r.rssPeakMb.toFixed(0), r.rssAfterMb.toFixed(0), `${r.heapAfterMb.toFixed(0)} / ${r.externalAfterMb.toFixed(0)}`,
    r.healthyLongestGapMs.toFixed(0), String(r.healthyUpdates), `${r.probes.ok} ok / ${r.probes.failed} failed, slowest ${r.probes.slowestMs.toFixed(0)} ms${r.probes.failures.length > 0 ? ` (failed: ${[...new Set(r.probes.failures)].join(", ")})` : ""}`,
    Object.entries(r.outcomes).map(([outcome, count]) => `${count} ${outcome}`).join('; '),
  ]);
  const header = ['attack', 'RSS before MB', 'RSS peak MB', 'RSS after MB', 'heap / external after MB', 'healthy VM longest EDS gap ms', 'healthy updates', 'new VMs', 'attack outcome'];
  return [header, ...rows].map((row) => `| ${row.join(' | ')} |`).join('\n');
}
