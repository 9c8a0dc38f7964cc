/**
 * A bench worker process: hosts a share of the simulated VM Envoys, so the load generator spreads
 * over processes and is not the bottleneck on its own. Driven by its parent over IPC.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { NodeMessage, XdsProtocol } from '../../src/xds/protocol/envelopes.js';
import { EnvoyClient, ResourceDecoder, notBefore, type ClientTls, type PushStamp } from './envoy-client.js';

export type WorkerCommand =
  /**
   * Client i connects to targets[i % targets.length] (a sharded baseline has several) from its source
   * address; over TLS with credentials[tls] when given (a workload certificate per service account).
   */
  | { type: 'init'; targets: string[]; protocol: XdsProtocol; credentials?: ClientTls[]; clients: Array<{ index: number; node: NodeMessage; nack: boolean; source: string; tls?: number }> }
  | { type: 'connect'; ratePerSecond: number }
  | { type: 'reconnect-all' }
  | { type: 'watch'; id: number; typeUrl: string; stamp: PushStamp }
  /** From now on, count the clients whose stream ends and how soon they are served again (a replica killed). */
  | { type: 'mark' }
  /** These clients leave for good (VMs that do not come back). */
  | { type: 'abandon'; indices: number[] }
  | { type: 'collect' }
  | { type: 'stop' };

export interface WorkerProgress {
  type: 'progress';
  connected: number;
  configured: number;
  responses: number;
  bytes: number;
  errors: number;
  nacks: number;
  reconnects: number;
  /** Clients that have seen the watched push (or a later one) of the watched type. */
  watched: number;
  /** Which watch `watched` counts for (a report sent before a new watch arrived counts the old one). */
  watchId: number;
  /** The kind of the latest error (for the live progress line). */
  lastError?: string;
  /** Clients whose current stream has answered them, holding their full config. */
  served: number;
  /** Since the last mark: clients that got a new stream, and those of them served on it. */
  moved: number;
  back: number;
  /** The longest this process's event loop was late since the storm began (ms): a deaf load generator answers no PING. */
  loopDelayMaxMs: number;
}

export interface WorkerSamples {
  type: 'samples';
  /** Milliseconds from connect to full config, per client configured since the last collect. */
  timeToConfigMs: number[];
  /** Milliseconds from the upstream's push stamp to receipt and to the ACK, per update received. */
  receiveMs: number[];
  ackMs: number[];
  hashes: Array<{ index: number; hash: string; configured: boolean }>;
  errorMessages: string[];
  /** Errors since the last collect, by kind (errorKind). */
  errorKinds: Record<string, number>;
  /** Since the last mark, per client that got a new stream and was served on it: ms from the mark. */
  backMs: number[];
}

/** An error message with its numbers (ports, counts, ms) taken out, so that alike errors count together. */
export function errorKind(message: string): string {
  return message.replace(/\d+(\.\d+)*/g, 'N').slice(0, 160);
}

const send = (message: WorkerProgress | WorkerSamples) => process.send?.(message);
/** Clients a storm connects per turn of the event loop. */
const CONNECT_BATCH = 100;

const decoder = new ResourceDecoder();
let clients: EnvoyClient[] = [];
let timeToConfigMs: number[] = [];
let receiveMs: number[] = [];
let ackMs: number[] = [];
let errors = 0;
const errorMessages: string[] = [];
let errorKinds: Record<string, number> = {};
let lastError: string | undefined;
let watch: { id: number; typeUrl: string; stamp: PushStamp } | undefined;
const latestPush = new Map<EnvoyClient, Map<string, PushStamp>>();
let connectTimer: NodeJS.Timeout | undefined;
/** The last mark (wall clock) and each client's stream count then. */
let mark: { ms: number; streams: Map<EnvoyClient, number> } | undefined;
const movedSinceMark = (client: EnvoyClient) => mark !== undefined && client.streamsOpened > (mark.streams.get(client) ?? 0);

const events = {
  configured: (_client: EnvoyClient, elapsedMs: number) => { timeToConfigMs.push(elapsedMs); },
  update: (client: EnvoyClient, typeUrl: string, stamp: PushStamp, receivedMs: number, ackedMs: number) => {
    receiveMs.push(receivedMs - stamp.ms);
    ackMs.push(ackedMs - stamp.ms);
    let pushes = latestPush.get(client);
    if (!pushes) latestPush.set(client, pushes = new Map());
    const latest = pushes.get(typeUrl);
    if (!latest || notBefore(stamp, latest)) pushes.set(typeUrl, stamp);
  },
  error: (_client: EnvoyClient, message: string) => {
    errors++;
    const kind = errorKind(message);
    errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
    lastError = kind;
    if (errorMessages.length < 20) errorMessages.push(message);
  },
};

function progress(): WorkerProgress {
  let connected = 0, configured = 0, responses = 0, bytes = 0, nacks = 0, reconnects = 0, watched = 0, served = 0, moved = 0, back = 0;
  for (const client of clients) {
    if (client.connected) connected++;
    const isServed = client.connected && client.servedAt !== undefined;
    if (isServed) served++;
    if (movedSinceMark(client)) {
      moved++;
      if (isServed) back++;
    }
    if (client.configuredAt !== undefined) configured++;
    responses += client.responses;
    bytes += client.bytesReceived;
    nacks += client.nacksSent;
    reconnects += client.reconnects;
    const latest = watch && latestPush.get(client)?.get(watch.typeUrl);
    if (watch && latest && notBefore(latest, watch.stamp)) watched++;
  }
  return { type: 'progress', connected, configured, responses, bytes, errors, nacks, reconnects, watched, watchId: watch?.id ?? 0, served, moved, back, loopDelayMaxMs: loopDelay.max / 1e6, ...(lastError ? { lastError } : {}) };
}

const loopDelay = monitorEventLoopDelay({ resolution: 20 });
loopDelay.enable();
const progressTimer = setInterval(() => send(progress()), 100);

process.on('message', (command: WorkerCommand) => {
  switch (command.type) {
    case 'init':
      clients = command.clients.map((spec) => new EnvoyClient(spec.index, command.targets[spec.index % command.targets.length]!, command.protocol, spec.node, spec.nack, decoder, events,
        spec.source, spec.tls === undefined ? undefined : command.credentials?.[spec.tls]));
      break;
    case 'connect': {
      // From the storm on: building the clients (init) is not a time the VMs are connected.
      loopDelay.reset();
      if (command.ratePerSecond <= 0) {
        // All at once, in batches that let the loop breathe between them: thousands of connects in
        // one go would leave this process deaf for seconds (no PING answered, nothing read), which
        // a real VM, with a CPU of its own, never is.
        const batch = (from: number) => {
          for (const client of clients.slice(from, from + CONNECT_BATCH)) client.connect();
          if (from + CONNECT_BATCH < clients.length) setImmediate(() => batch(from + CONNECT_BATCH));
        };
        batch(0);
        break;
      }
      let next = 0;
      const perTick = Math.max(1, Math.round(command.ratePerSecond / 100));
      connectTimer = setInterval(() => {
        for (let i = 0; i < perTick && next < clients.length; i++) clients[next++]!.connect();
        if (next >= clients.length) clearInterval(connectTimer);
      }, 10);
      break;
    }
    case 'reconnect-all':
      for (const client of clients) {
        client.close();
        client.connect(true);
      }
      break;
    case 'watch':
      watch = { id: command.id, typeUrl: command.typeUrl, stamp: command.stamp };
      break;
    case 'mark':
      mark = { ms: Date.now(), streams: new Map(clients.map((client) => [client, client.streamsOpened])) };
      break;
    case 'abandon': {
      const leaving = new Set(command.indices);
      for (const client of clients.filter((c) => leaving.has(c.index))) client.close();
      clients = clients.filter((c) => !leaving.has(c.index));
      break;
    }
    case 'collect':
      send({
        type: 'samples', timeToConfigMs, receiveMs, ackMs, errorMessages: errorMessages.splice(0), errorKinds,
        backMs: clients.filter((client) => movedSinceMark(client) && client.servedAt !== undefined).map((client) => client.servedAt! - mark!.ms),
        hashes: clients.map((client) => ({ index: client.index, hash: client.configHash(), configured: client.configuredAt !== undefined })),
      });
      timeToConfigMs = [];
      errorKinds = {};
      receiveMs = [];
      ackMs = [];
      break;
    case 'stop':
      clearInterval(progressTimer);
      clearInterval(connectTimer);
      for (const client of clients) client.close();
      send(progress());
      setTimeout(() => process.exit(0), 50);
      break;
  }
});
