/**
 * The attacking side of `meshrelay bench attack`, in its own process: the load it generates (1,000
 * streams, gigabytes written) must not slow the healthy VM and the probes the parent measures with.
 * Driven over IPC: `run` → `started` (the measured window opens) → [`restart-upstream` →
 * `upstream-restarted`] → `done` with how the attacking streams ended.
 */
import http2 from 'node:http2';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { CreateCertificateMethod } from '../../src/ca/ca-forwarder.js';
import { vmNode } from '../../src/sim/vm-node.js';
import { frameMessage } from '../../src/transport/grpc-framing.js';
import { AdsMethod, Envelopes, type NodeMessage } from '../../src/xds/protocol/envelopes.js';
import { messageType } from '../../src/xds/protocol/protos.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { makeCsr } from '../csr-factory.js';
import type { BENCH_ATTACKS } from '../../src/config/schema.js';

export type Attack = (typeof BENCH_ATTACKS)[number];

export interface AttackRun {
  attack: Attack;
  target: string;
  /** The EDS names the healthy VM subscribes to (the slow readers ask for almost all of them). */
  names: string[];
  /** The healthy VM's node: the poisoning attacker speaks as it, so it shares the healthy VM's group. */
  healthyNode: NodeMessage;
  token: string;
  streams: number;
  holdSeconds: number;
}

export type AttackerCommand = { type: 'run'; run: AttackRun } | { type: 'upstream-restarted' };
export type AttackerMessage = { type: 'started' } | { type: 'restart-upstream' } | { type: 'done'; outcomes: Record<string, number> };

const EDS = TypeUrl.endpoint;
const STREAMS_PER_CONNECTION = 100;
const MiB = 1024 * 1024;


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


/** Every stream subscribes to all EDS names but two of its own choosing: no two responses alike. */
async function slowReaders(target: string, names: string[], options: AttackRun, outcomes: Outcomes): Promise<void> {
  const attack = openStreams(target, options.streams, true, outcomes);
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
async function partialMessages(target: string, options: AttackRun, outcomes: Outcomes): Promise<void> {
  const declared = 4 * MiB - 10;
  const header = Buffer.alloc(5);
  header.writeUInt32BE(declared, 1);
  const body = Buffer.alloc(declared - 100);
  const attack = openStreams(target, options.streams, false, outcomes);
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
async function groupPoisoning(target: string, restartUpstream: () => Promise<void>, options: AttackRun, outcomes: Outcomes, poisoned: boolean): Promise<void> {
  const attack = openStreams(target, 1, false, outcomes);
  const stream = attack.streams[0]!;
  stream.resume();
  for (let round = 0; round < (poisoned ? 25 : 0); round++) {
    const names = Array.from({ length: 5000 }, (_, i) => `outbound|80||bogus-${round}-${i}.nowhere.svc.cluster.local`);
    stream.write(frameMessage(Envelopes.encodeDeltaRequest({ ...(round === 0 ? { node: options.healthyNode } : {}), type_url: EDS, resource_names_subscribe: names })));
  }
  await sleep(3000);
  await restartUpstream();
  await sleep(options.holdSeconds * 1000);
  attack.close();
}

/** 20 distinct RSA-2048 CSRs, as istio-agent sends; made before the attack starts. */
function csrRequests(): Buffer[] {
  const requestType = messageType('istio.v1.auth.IstioCertificateRequest');
  return Array.from({ length: 20 }, () => Buffer.from(requestType.encode(requestType.fromObject({ csr: makeCsr('rsa-2048'), validity_duration: 3600 })).finish()));
}

/** `streams` CSRs at once, authenticated. */
async function csrStorm(target: string, token: string, csrs: Buffer[], options: AttackRun, outcomes: Outcomes): Promise<void> {
  const clients = Array.from({ length: 8 }, () => new grpc.Client(target, grpc.credentials.createInsecure()));
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

const send = (message: AttackerMessage) => process.send?.(message);

let restarted: (() => void) | undefined;

function restartUpstream(): Promise<void> {
  return new Promise((resolve) => {
    restarted = resolve;
    send({ type: 'restart-upstream' });
  });
}

async function run(options: AttackRun): Promise<void> {
  const outcomes = new Outcomes();
  const csrs = options.attack === 'csr-storm' ? csrRequests() : [];
  send({ type: 'started' });
  switch (options.attack) {
    case 'slow-readers': await slowReaders(options.target, options.names, options, outcomes); break;
    case 'partial-messages': await partialMessages(options.target, options, outcomes); break;
    case 'group-poisoning': await groupPoisoning(options.target, restartUpstream, options, outcomes, true); break;
    case 'upstream-restart': await groupPoisoning(options.target, restartUpstream, options, outcomes, false); break;
    case 'csr-storm': await csrStorm(options.target, options.token, csrs, options, outcomes); break;
  }
  // Let the last streams' endings be counted.
  await sleep(500);
  send({ type: 'done', outcomes: outcomes.counts });
}

process.on('message', (command: AttackerCommand) => {
  if (command.type === 'run') void run(command.run).finally(() => process.exit(0));
  else restarted?.();
});
