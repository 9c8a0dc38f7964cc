/**
 * `meshrelay bench attack`: the hostile loads of docs/RELIABILITY.md replayed against a relay process
 * in front of the simulated istiod (300 services), while a healthy VM and fresh VMs are watched.
 * Reports, per attack: the relay's RSS before, at peak and after; the healthy VM's longest gap
 * between EDS updates (the upstream changes one endpoint every 250 ms); how new VMs fared; and how
 * the attacking streams ended.
 */
import http2 from 'node:http2';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import { createDevCa } from '../../src/ca/dev-ca.js';
import { DEV_ISSUER, ensureDevTokenIssuer, mintDevToken } from '../../src/ca/dev-token-issuer.js';
import { CreateCertificateMethod } from '../../src/ca/ca-forwarder.js';
import { vmNode } from '../../src/sim/vm-node.js';
import { frameMessage } from '../../src/transport/grpc-framing.js';
import { AdsMethod, Envelopes } from '../../src/xds/protocol/envelopes.js';
import { messageType } from '../../src/xds/protocol/protos.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { makeCsr } from '../csr-factory.js';
import { RssSampler, rssBytes } from '../process-stats.js';
import { startRelayProcess, type RelayProcess } from '../relay-process.js';
import { EnvoyClient, ResourceDecoder, type ClientEvents } from '../xds/envoy-client.js';
import { profileMesh } from '../xds/profiles.js';
import { changeOneEndpoint, startSim } from '../xds/xds-bench.js';

/** `upstream-restart` is the control for `group-poisoning`: the same restart, no attacker. */
export const ATTACKS = ['slow-readers', 'partial-messages', 'group-poisoning', 'upstream-restart', 'csr-storm'] as const;
export type Attack = (typeof ATTACKS)[number];

export interface AttackOptions {
  attacks: Attack[];
  /** Attacking streams (slow readers, partial messages) or CSRs. */
  streams: number;
  holdSeconds: number;
  /** Endpoints per service of the 300-service mesh (a quarter on the VMs' network, the rest behind its gateway). */
  endpointsPerService: number;
  /** Extra `meshrelay serve` flags (e.g. --max-buffered-mb 512). */
  serveArgs: string[];
}

export interface AttackResult {
  attack: Attack;
  rssBeforeMb: number;
  rssPeakMb: number;
  rssAfterMb: number;
  healthyLongestGapMs: number;
  healthyUpdates: number;
  healthyErrors: number;
  probes: { ok: number; failed: number; slowestMs: number };
  /** How the attacking streams or calls ended: gRPC status name (or RST code) → count. */
  outcomes: Record<string, number>;
}

const EDS = TypeUrl.endpoint;
const CHURN_INTERVAL_MS = 250;
const PROBE_INTERVAL_MS = 2000;
const PROBE_TIMEOUT_MS = 10_000;
const STREAMS_PER_CONNECTION = 100;
const MiB = 1024 * 1024;

const healthyNode = () => vmNode({ name: 'healthy' });

/** Counts how each attacking stream ended: grpc-status from trailers, else the RST code. */
class Outcomes {
  readonly counts: Record<string, number> = {};

  watch(stream: http2.ClientHttp2Stream): void {
    let status: string | undefined;
    const record = (headers: http2.IncomingHttpHeaders) => {
      if (headers['grpc-status'] !== undefined) status = grpc.status[Number(headers['grpc-status'])] ?? String(headers['grpc-status']);
    };
    stream.on('response', record);
    stream.on('trailers', record);
    stream.on('error', () => {});
    stream.on('close', () => {
      const outcome = status ?? (stream.rstCode === http2.constants.NGHTTP2_ENHANCE_YOUR_CALM ? 'RST ENHANCE_YOUR_CALM (RESOURCE_EXHAUSTED)' : `closed (rst ${stream.rstCode})`);
      this.add(outcome);
    });
  }

  add(outcome: string): void {
    this.counts[outcome] = (this.counts[outcome] ?? 0) + 1;
  }
}

/** Raw HTTP/2 ADS streams, many per connection; `windowShut` stops the relay sending anything. */
function openStreams(target: string, count: number, windowShut: boolean, outcomes: Outcomes): { streams: http2.ClientHttp2Stream[]; close(): void } {
  const sessions: http2.ClientHttp2Session[] = [];
  const streams: http2.ClientHttp2Stream[] = [];
  for (let index = 0; index < count; index++) {
    if (index % STREAMS_PER_CONNECTION === 0) {
      const session = http2.connect(`http://${target}`, windowShut ? { settings: { initialWindowSize: 0 } } : {});
      session.on('error', () => {});
      sessions.push(session);
    }
    const stream = sessions.at(-1)!.request({ ':method': 'POST', ':path': AdsMethod.delta, 'content-type': 'application/grpc', te: 'trailers' });
    outcomes.watch(stream);
    streams.push(stream);
  }
  return { streams, close: () => { for (const session of sessions) session.destroy(); } };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Every stream subscribes to all EDS names but two of its own choosing: no two responses alike. */
async function slowReaders(relay: RelayProcess, names: string[], options: AttackOptions, outcomes: Outcomes): Promise<void> {
  const attack = openStreams(relay.address, options.streams, true, outcomes);
  for (const [index, stream] of attack.streams.entries()) {
    const skip = new Set([index % names.length, Math.floor(index / names.length) % names.length]);
    stream.write(frameMessage(Envelopes.encodeDeltaRequest({
      node: vmNode({ name: `slow-${index}` }), type_url: EDS, resource_names_subscribe: names.filter((_, i) => !skip.has(i)),
    })));
    if (index % 50 === 49) await sleep(10);
  }
  await sleep(options.holdSeconds * 1000);
  attack.close();
}

/** Every stream declares a 4 MiB − 10 message, sends all but 100 bytes, and holds. */
async function partialMessages(relay: RelayProcess, options: AttackOptions, outcomes: Outcomes): Promise<void> {
  const declared = 4 * MiB - 10;
  const header = Buffer.alloc(5);
  header.writeUInt32BE(declared, 1);
  const body = Buffer.alloc(declared - 100);
  const attack = openStreams(relay.address, options.streams, false, outcomes);
  for (const [index, stream] of attack.streams.entries()) {
    stream.write(header);
    stream.write(body);
    if (index % 20 === 19) await sleep(20);
  }
  await sleep(options.holdSeconds * 1000);
  attack.close();
}

/**
 * A VM of the healthy VM's group subscribes 25 × 5,000 names no upstream has, then the upstream
 * restarts: the group's resubscribe carries them all.
 */
async function groupPoisoning(relay: RelayProcess, restartUpstream: () => Promise<void>, options: AttackOptions, outcomes: Outcomes, poisoned: boolean): Promise<void> {
  const attack = openStreams(relay.address, 1, false, outcomes);
  const stream = attack.streams[0]!;
  stream.resume();
  for (let round = 0; round < (poisoned ? 25 : 0); round++) {
    const names = Array.from({ length: 5000 }, (_, i) => `outbound|80||bogus-${round}-${i}.nowhere.svc.cluster.local`);
    stream.write(frameMessage(Envelopes.encodeDeltaRequest({ ...(round === 0 ? { node: healthyNode() } : {}), type_url: EDS, resource_names_subscribe: names })));
  }
  await sleep(3000);
  await restartUpstream();
  await sleep(options.holdSeconds * 1000);
  attack.close();
}

/** 20 distinct RSA-2048 CSRs, as istio-agent sends; made before the attack (key generation would stall the watching process). */
function csrRequests(): Buffer[] {
  const requestType = messageType('istio.v1.auth.IstioCertificateRequest');
  return Array.from({ length: 20 }, () => Buffer.from(requestType.encode(requestType.fromObject({ csr: makeCsr('rsa-2048'), validity_duration: 3600 })).finish()));
}

/** `streams` CSRs at once, authenticated. */
async function csrStorm(relay: RelayProcess, token: string, csrs: Buffer[], options: AttackOptions, outcomes: Outcomes): Promise<void> {
  const clients = Array.from({ length: 8 }, () => new grpc.Client(relay.address, grpc.credentials.createInsecure()));
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  const call = (index: number) => new Promise<void>((resolve) => {
    clients[index % clients.length]!.makeUnaryRequest(CreateCertificateMethod, (b: Buffer) => b, (b: Buffer) => b, csrs[index % csrs.length]!, metadata, (error) => {
      outcomes.add(error ? grpc.status[error.code] ?? String(error.code) : 'OK');
      resolve();
    });
  });
  await Promise.all(Array.from({ length: options.streams }, (_, index) => call(index)));
  await sleep(options.holdSeconds * 1000);
  for (const client of clients) client.close();
}

/** A VM Envoy that records every EDS update's arrival. */
function watchedVm(target: string, name: string, onUpdate: (ms: number) => void, onError: () => void): EnvoyClient {
  const events: ClientEvents = {
    configured: () => {},
    update: (_client, typeUrl, _stamp, receivedMs) => { if (typeUrl === EDS) onUpdate(receivedMs); },
    error: () => onError(),
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
    '--ca-mode', 'local', '--ca-dir', path.join(base, 'ca'), '--jwks-file', issuer.jwksFile, '--jwt-issuers', DEV_ISSUER, ...options.serveArgs]);
  let step = 0;
  const churn = setInterval(() => { mesh = changeOneEndpoint(mesh, step++); void sim.apply(mesh); }, CHURN_INTERVAL_MS);
  const updates: number[] = [];
  let healthyErrors = 0;
  const healthy = watchedVm(relay.address, 'healthy', (ms) => updates.push(ms), () => healthyErrors++);
  healthy.connect();
  if (await untilConfigured(healthy, 30_000) === undefined) throw new Error('the healthy VM was never configured');
  const names = [...healthy.wanted(EDS)];
  await sleep(2000);
  const rssBefore = rssBytes(relay.pid);
  const sampler = new RssSampler(relay.pid);
  const outcomes = new Outcomes();
  const probes = { ok: 0, failed: 0, slowestMs: 0 };
  let probing = true;
  const probeLoop = (async () => {
    for (let index = 0; probing; index++) {
      const probe = watchedVm(relay.address, `probe-${index}`, () => {}, () => {});
      probe.connect();
      const took = await untilConfigured(probe, PROBE_TIMEOUT_MS);
      probe.close();
      if (took === undefined) probes.failed++;
      else {
        probes.ok++;
        probes.slowestMs = Math.max(probes.slowestMs, took);
      }
      await sleep(PROBE_INTERVAL_MS);
    }
  })();
  const token = mintDevToken(issuer, 'vm', 'vm-sa', 3600);
  const csrs = attack === 'csr-storm' ? csrRequests() : [];
  const attackStart = Date.now();
  switch (attack) {
    case 'slow-readers': await slowReaders(relay, names, options, outcomes); break;
    case 'partial-messages': await partialMessages(relay, options, outcomes); break;
    case 'group-poisoning': await groupPoisoning(relay, () => sim.restart!(1000), options, outcomes, true); break;
    case 'upstream-restart': await groupPoisoning(relay, () => sim.restart!(1000), options, outcomes, false); break;
    case 'csr-storm': await csrStorm(relay, token, csrs, options, outcomes); break;
  }
  const attackEnd = Date.now();
  probing = false;
  await probeLoop;
  await sleep(5000);
  const rssPeak = sampler.stop();
  const rssAfter = rssBytes(relay.pid);
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
    healthyLongestGapMs: longestGap,
    healthyUpdates: during.length - 2,
    healthyErrors,
    probes,
    outcomes: outcomes.counts,
  };
}

export async function runAttackBench(options: AttackOptions): Promise<AttackResult[]> {
  const results: AttackResult[] = [];
  for (const attack of options.attacks) results.push(await runOne(attack, options));
  return results;
}

export function attackTable(results: AttackResult[]): string {
  const rows = results.map((r) => [
    r.attack, r.rssBeforeMb.toFixed(0), r.rssPeakMb.toFixed(0), r.rssAfterMb.toFixed(0),
    r.healthyLongestGapMs.toFixed(0), String(r.healthyUpdates), `${r.probes.ok} ok / ${r.probes.failed} failed, slowest ${r.probes.slowestMs.toFixed(0)} ms`,
    Object.entries(r.outcomes).map(([outcome, count]) => `${count} ${outcome}`).join('; '),
  ]);
  const header = ['attack', 'RSS before MB', 'RSS peak MB', 'RSS after MB', 'healthy VM longest EDS gap ms', 'healthy updates', 'new VMs', 'attack outcome'];
  return [header, ...rows].map((row) => `| ${row.join(' | ')} |`).join('\n');
}
