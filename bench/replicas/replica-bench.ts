import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CustomObjectsApi, Watch } from '@kubernetes/client-node';
import { loadKubeConfig } from '../../src/k8s/kube-client.js';
import { Annotation, NETWORKING_GROUP, NETWORKING_VERSION } from '../../src/k8s/workload-entry-template.js';
import type { XdsProtocol } from '../../src/xds/protocol/envelopes.js';
import { freePort } from '../free-port.js';
import { startHaproxy, type LoadBalancer } from '../lb/haproxy.js';
import { rssBytes } from '../process-stats.js';
import { startRelayProcess, type RelayProcess } from '../relay-process.js';
import { summarize, type LatencySummary } from '../stats.js';
import { upstreamCounters } from '../xds/bench-run.js';
import { checkCorrectness } from '../xds/correctness.js';
import { ResourceDecoder } from '../xds/envoy-client.js';
import { clientAddress, clientNode, clientServiceAccount } from '../xds/fleet.js';
import { FleetProcesses } from '../xds/fleet-processes.js';
import { benchCredentials } from './bench-credentials.js';

export interface ReplicaBenchOptions {
  clients: number;
  replicas: number;
  groups: number;
  protocol: XdsProtocol;
  workers: number;
  clientsPerAddress: number;
  connectRate: number;
  graceSeconds: number;
  leaseSeconds: number;
  abandon: number;
  upstream: { target: string; pid?: number; kubeconfig: string };
  timeoutSeconds: number;
  onProgress?: (line: string) => void;
}

export interface ReplicaBenchResult {
  clients: number;
  replicas: number;
  connect: { totalMs: number | undefined; timeToConfig: LatencySummary | undefined };
  registration: { totalMs: number | undefined; entries: number };
  spread: { entriesByReplica: Record<string, number>; sessionsByReplica: Record<string, number>; upstreamStreams: number };
  kill: {
    victim: string;
    /** VMs the victim served, and of them the ones that left for good. */
    served: number;
    abandoned: number;
    /** From the kill until every VM that came back was served again on a new stream. */
    allBackMs: number | undefined;
    back: LatencySummary | undefined;
    upstreamStreamsAfter: number;
  };
  entries: {
    /** Entries of VMs that came back: deleted or recreated (uid changed), DELETED events seen. */
    lost: number;
    recreated: number;
    deletedEvents: number;
    /** Entries of the abandoned VMs a survivor deleted, and when (from the kill). */
    strandedDeleted: number;
    strandedDeletedMs: number | undefined;
    takenOverBySurvivors: number;
  };
  correctness: { checked: number; matching: number };
  relayRssBytes: Record<string, number>;
  errors: number;
  errorKinds: Record<string, number>;
}

const GROUP_PREFIX = 'bench-fleet';
const groupName = (group: number) => `${GROUP_PREFIX}-${group}`;
const entryName = (index: number, groups: number) => `${groupName(index % groups)}-${clientAddress(index)}-vm-net`;

interface Replica { name: string; port: number; adminPort: number; process?: RelayProcess }

/**
 * `meshrelay bench replicas`: relay replicas as deploy/ runs them (group mode, auto-registration,
 * a state dir each) behind HAProxy, in front of a real istiod and its API server; VMs over TLS with
 * workload certificates; then one replica is killed with SIGKILL under load. Measures how fast
 * the VMs are served again through the survivors and what happened to their WorkloadEntries.
 */
export async function runReplicaBench(options: ReplicaBenchOptions): Promise<ReplicaBenchResult> {
  const { clients, groups, upstream } = options;
  const dir = mkdtempSync(path.join(tmpdir(), 'meshrelay-bench-replicas-'));
  const credentials = benchCredentials(path.join(dir, 'ca'));
  const kube = loadKubeConfig(upstream.kubeconfig);
  const api = kube.makeApiClient(CustomObjectsApi);
  const coordinates = (plural: string) => ({ group: NETWORKING_GROUP, version: NETWORKING_VERSION, namespace: 'vm', plural });
  const listEntries = async () => {
    const list = await api.listNamespacedCustomObject(coordinates('workloadentries')) as { items: Array<{ metadata: { name: string; uid: string; annotations?: Record<string, string> } }> };
    return list.items.filter((item) => item.metadata.name.startsWith(`${GROUP_PREFIX}-`));
  };
  await prepareGroups(api, coordinates, groups, listEntries);

  const replicas: Replica[] = [];
  for (let i = 0; i < options.replicas; i++) replicas.push({ name: `bench-replica-${i}`, port: await freePort(), adminPort: await freePort() });
  let balancer: LoadBalancer | undefined;
  let watch: AbortController | undefined;
  const fleet = new FleetProcesses({ ...options, nackFraction: 0, clientCpus: '' }, 'replicas');
  try {
    await Promise.all(replicas.map(async (replica) => {
      replica.process = await startRelayProcess([
        '--workers', '1', '--mode', 'group', '--ca-mode', 'off',
        '--tls-listen', `127.0.0.1:${replica.port}`, '--tls-cert-file', credentials.serving.certFile, '--tls-key-file', credentials.serving.keyFile,
        '--tls-client-ca-file', credentials.rootFile,
        '--upstream', upstream.target, '--kubeconfig', upstream.kubeconfig, '--address-config-source', 'kubernetes',
        '--auto-registration', '--instance-id', replica.name, '--workload-entry-grace-period-seconds', String(options.graceSeconds),
        '--replica-lease-seconds', String(options.leaseSeconds), '--state-dir', mkdtempSync(path.join(dir, `${replica.name}-`)),
        '--admin-listen', `127.0.0.1:${replica.adminPort}`, '--max-connections', String(clients),
      ]);
    }));
    // Two files per proxied connection: one HAProxy process per 8,000 VMs keeps each under the open-file limit.
    balancer = await startHaproxy(replicas.map((r) => ({ name: r.name, port: r.port, adminPort: r.adminPort })), { processes: Math.max(1, Math.ceil(clients / 8000)) });
    const lb = balancer;
    await until(options, 'replicas up', async () => (await lb.servers()).filter((s) => s.status === 'UP').length === replicas.length);

    fleet.start([lb.address], {
      node: (index) => clientNode(index, groups, { AUTO_REGISTER_GROUP: groupName(index % groups) }),
      credentials: Array.from({ length: groups }, (_, group) => credentials.client(clientServiceAccount(group))),
      credentialOf: (index) => index % groups,
    });
    const connectStarted = performance.now();
    fleet.broadcast({ type: 'connect', ratePerSecond: options.connectRate });
    const connectMs = await fleet.until('connect', () => fleet.total('configured') >= clients, connectStarted);
    const timeToConfig = (await fleet.collect()).flatMap((s) => s.timeToConfigMs);
    let entries = await listEntries();
    // Timed from the storm's start, but given its own timeout: a VM still registering when the
    // replica is killed would make the kill's figures the registration's.
    const registrationMs = await until(options, 'registration', async () => (entries = await listEntries()).length >= clients, connectStarted,
      performance.now() - connectStarted + options.timeoutSeconds * 1000);

    const controllerOf = (entry: (typeof entries)[number]) => entry.metadata.annotations?.[Annotation.workloadController] ?? '';
    const before = new Map(entries.map((entry) => [entry.metadata.name, { uid: entry.metadata.uid, controller: controllerOf(entry) }]));
    const spread = {
      entriesByReplica: countBy(entries.map(controllerOf)),
      sessionsByReplica: Object.fromEntries((await lb.servers()).map((s) => [s.name, s.sessions])),
      upstreamStreams: await upstreamStreams(replicas),
    };

    // Every DELETED event of a bench entry from here on: a VM that came back must see none.
    const deletedEvents: string[] = [];
    watch = await new Watch(kube).watch(`/apis/${NETWORKING_GROUP}/${NETWORKING_VERSION}/namespaces/vm/workloadentries`, {},
      (phase, object: { metadata?: { name?: string } }) => { if (phase === 'DELETED' && object.metadata?.name?.startsWith(`${GROUP_PREFIX}-`)) deletedEvents.push(object.metadata.name); },
      () => {});

    const victim = replicas[0]!;
    const onVictim = [...Array(clients).keys()].filter((index) => before.get(entryName(index, groups))?.controller === victim.name);
    const abandoned = onVictim.slice(0, options.abandon);
    const abandonedNames = new Set(abandoned.map((index) => entryName(index, groups)));
    fleet.broadcast({ type: 'mark' });
    fleet.broadcast({ type: 'abandon', indices: abandoned });
    const killedAt = performance.now();
    process.kill(victim.process!.pid, 'SIGKILL');
    const expectedMoved = onVictim.length - abandoned.length;
    // Every VM that lost its stream (the victim's, and any other) is served again on a new one.
    const allBackMs = await fleet.until('kill -9', () => fleet.total('moved') >= expectedMoved && fleet.total('back') >= fleet.total('moved'), killedAt);
    const afterKill = await fleet.collect();
    const backMs = afterKill.flatMap((s) => s.backMs);
    const hashes = afterKill.flatMap((s) => s.hashes);
    const survivors = replicas.slice(1);
    const upstreamStreamsAfter = await upstreamStreams(survivors);

    // The dead replica cannot delete its abandoned VMs' entries; a survivor does once its lease expired.
    let strandedDeletedMs: number | undefined;
    await until(options, 'stranded entries', async () => {
      const names = new Set((await listEntries()).map((entry) => entry.metadata.name));
      const done = [...abandonedNames].every((name) => !names.has(name));
      if (done) strandedDeletedMs = performance.now() - killedAt;
      return done;
    }, killedAt, (options.leaseSeconds + options.graceSeconds) * 1000 + options.timeoutSeconds * 1000);
    // Past the grace period, so an entry a survivor would wrongly delete is gone by now.
    await sleep(options.graceSeconds * 1000);
    const after = new Map((await listEntries()).map((entry) => [entry.metadata.name, { uid: entry.metadata.uid, controller: controllerOf(entry) }]));
    let lost = 0, recreated = 0, takenOver = 0;
    for (const [name, was] of before) {
      if (abandonedNames.has(name)) continue;
      const now = after.get(name);
      if (!now) lost++;
      else if (now.uid !== was.uid) recreated++;
      else if (was.controller === victim.name && now.controller !== victim.name) takenOver++;
    }
    const correctness = await checkCorrectness(hashes, { ...options, boundEvery: 0 }, { target: upstream.target }, new ResourceDecoder());
    return {
      clients, replicas: replicas.length,
      connect: { totalMs: connectMs, timeToConfig: timeToConfig.length > 0 ? summarize(timeToConfig) : undefined },
      registration: { totalMs: registrationMs, entries: before.size },
      spread,
      kill: {
        victim: victim.name, served: onVictim.length, abandoned: abandoned.length, allBackMs,
        back: backMs.length > 0 ? summarize(backMs) : undefined, upstreamStreamsAfter,
      },
      entries: {
        lost, recreated, deletedEvents: deletedEvents.filter((name) => !abandonedNames.has(name)).length,
        strandedDeleted: [...abandonedNames].filter((name) => !after.has(name)).length, strandedDeletedMs, takenOverBySurvivors: takenOver,
      },
      correctness: { checked: correctness.checked, matching: correctness.matching },
      relayRssBytes: Object.fromEntries(survivors.map((replica) => [replica.name, rssBytes(replica.process!.pid)])),
      errors: fleet.total('errors'),
      errorKinds: fleet.errors.kinds,
    };
  } finally {
    watch?.abort();
    await fleet.stop().catch(() => {});
    await balancer?.close();
    await Promise.all(replicas.map((replica) => replica.process?.stop()));
    await cleanUp(api, coordinates, groups, listEntries);
  }
}

type Coordinates = (plural: string) => { group: string; version: string; namespace: string; plural: string };
type EntryLister = () => Promise<Array<{ metadata: { name: string } }>>;

/** One WorkloadGroup per service account (bench/xds/fleet.ts), labelled so that no Service selects its entries; no old entries. */
async function prepareGroups(api: CustomObjectsApi, coordinates: Coordinates, groups: number, listEntries: EntryLister): Promise<void> {
  await cleanUp(api, coordinates, groups, listEntries);
  for (let group = 0; group < groups; group++) {
    await api.createNamespacedCustomObject({
      ...coordinates('workloadgroups'),
      body: {
        apiVersion: `${NETWORKING_GROUP}/${NETWORKING_VERSION}`, kind: 'WorkloadGroup', metadata: { name: groupName(group), namespace: 'vm' },
        spec: { metadata: { labels: { 'bench.meshrelay.io/fleet': groupName(group) } }, template: { serviceAccount: clientServiceAccount(group), network: 'vm-net' } },
      },
    });
  }
}

async function cleanUp(api: CustomObjectsApi, coordinates: Coordinates, groups: number, listEntries: EntryLister): Promise<void> {
  for (let group = 0; group < groups; group++) await api.deleteNamespacedCustomObject({ ...coordinates('workloadgroups'), name: groupName(group) }).catch(() => {});
  const entries = await listEntries();
  for (let i = 0; i < entries.length; i += 50) {
    await Promise.all(entries.slice(i, i + 50).map((entry) => api.deleteNamespacedCustomObject({ ...coordinates('workloadentries'), name: entry.metadata.name }).catch(() => {})));
  }
}

/** Upstream streams of the replicas' groups that serve VMs (each replica's /debug/groups). */
async function upstreamStreams(replicas: Replica[]): Promise<number> {
  const counters = await Promise.all(replicas.map((replica) => upstreamCounters(`http://127.0.0.1:${replica.adminPort}`)));
  return counters.reduce((sum, c) => sum + c.streams, 0);
}

function countBy(values: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const value of values) out[value] = (out[value] ?? 0) + 1;
  return out;
}

/** Polls `done` once a second from `started` until it holds; the elapsed ms, or undefined at the timeout. */
async function until(options: ReplicaBenchOptions, phase: string, done: () => Promise<boolean>, started = performance.now(), timeoutMs = options.timeoutSeconds * 1000): Promise<number | undefined> {
  for (;;) {
    if (await done()) return performance.now() - started;
    if (performance.now() - started > timeoutMs) return undefined;
    options.onProgress?.(`[replicas] ${phase}: ${((performance.now() - started) / 1000).toFixed(1)}s`);
    await sleep(1000);
  }
}

/** The result as the table docs/BENCHMARKS.md quotes. */
export function replicaTable(result: ReplicaBenchResult): string {
  const ms = (value: number | undefined) => (value === undefined ? 'timed out' : `${Math.round(value)} ms`);
  const rows: Array<[string, string]> = [
    ['VMs, replicas', `${result.clients}, ${result.replicas}`],
    ['connect storm through HAProxy: all configured', ms(result.connect.totalMs)],
    ['time to config p50 / p99', result.connect.timeToConfig ? `${ms(result.connect.timeToConfig.p50)} / ${ms(result.connect.timeToConfig.p99)}` : '–'],
    ['all WorkloadEntries registered (from the storm\'s start)', `${ms(result.registration.totalMs)} (${result.registration.entries})`],
    ['entries by replica', JSON.stringify(result.spread.entriesByReplica)],
    ['HAProxy sessions by replica', JSON.stringify(result.spread.sessionsByReplica)],
    ['upstream streams to istiod (all replicas)', String(result.spread.upstreamStreams)],
    [`kill -9 ${result.kill.victim}: its VMs (abandoned)`, `${result.kill.served} (${result.kill.abandoned})`],
    ['all VMs served again after the kill', ms(result.kill.allBackMs)],
    ['moved VMs: served again p50 / p99 / max', result.kill.back ? `${ms(result.kill.back.p50)} / ${ms(result.kill.back.p99)} / ${ms(result.kill.back.max)}` : '–'],
    ['upstream streams to istiod after (survivors)', String(result.kill.upstreamStreamsAfter)],
    ['entries of returning VMs lost / recreated / DELETED events', `${result.entries.lost} / ${result.entries.recreated} / ${result.entries.deletedEvents}`],
    ['entries taken over by survivors', String(result.entries.takenOverBySurvivors)],
    ['stranded entries deleted by a survivor (after the kill)', `${result.entries.strandedDeleted} of ${result.kill.abandoned} (${ms(result.entries.strandedDeletedMs)})`],
    ['VMs with istiod\'s config after the kill', `${result.correctness.matching} of ${result.correctness.checked}`],
    ['survivors\' RSS', Object.entries(result.relayRssBytes).map(([name, bytes]) => `${name} ${(bytes / 1048576).toFixed(0)} MiB`).join(', ')],
    ['client errors (kinds)', `${result.errors} ${JSON.stringify(result.errorKinds)}`],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  return rows.map(([label, value]) => `| ${label.padEnd(width)} | ${value} |`).join('\n');
}

/** Whether the run reached what the issue asks: all back, no entry lost or flapped, every VM correct. */
export function replicaBenchPassed(result: ReplicaBenchResult): boolean {
  return result.kill.allBackMs !== undefined && result.entries.lost === 0 && result.entries.recreated === 0 && result.entries.deletedEvents === 0
    && result.entries.strandedDeleted === result.kill.abandoned && result.correctness.matching === result.correctness.checked;
}
