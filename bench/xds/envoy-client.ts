import { createHash } from 'node:crypto';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { frameMessage, MessageDeframer } from '../../src/transport/grpc-framing.js';
import { AdsMethod, Envelopes, type AnyMessage, type DeltaDiscoveryResponse, type DiscoveryResponse, type NodeMessage, type RpcStatus, type XdsProtocol } from '../../src/xds/protocol/envelopes.js';
import { messageType } from '../../src/xds/protocol/protos.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';


const CDS = TypeUrl.cluster;
const EDS = TypeUrl.endpoint;
const LDS = TypeUrl.listener;
const RDS = TypeUrl.route;
const HCM_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const EDS_CLUSTER_TYPE = 3;

interface Decoded {
  name: string;
  hash: string;
  /** EDS service names a cluster needs, or RDS names a listener needs. */
  references: string[];
}

/**
 * Decodes each distinct resource once per worker process: thousands of simulated Envoys receive the
 * same bytes, and the load generator must not be the bottleneck.
 */
export class ResourceDecoder {
  private readonly memo = new Map<string, Decoded>();

  decode(typeUrl: string, value: Uint8Array): Decoded {
    const hash = createHash('sha1').update(typeUrl).update(value).digest('base64');
    let decoded = this.memo.get(hash);
    if (!decoded) {
      decoded = { hash, ...this.inspect(typeUrl, value) };
      this.memo.set(hash, decoded);
    }
    return decoded;
  }

  private inspect(typeUrl: string, value: Uint8Array): { name: string; references: string[] } {
    switch (typeUrl) {
      case CDS: {
        const cluster = messageType('envoy.config.cluster.v3.Cluster').decode(value) as any;
        const eds = cluster.type === EDS_CLUSTER_TYPE || cluster.type === 'EDS';
        return { name: cluster.name, references: eds ? [cluster.eds_cluster_config?.service_name || cluster.name] : [] };
      }
      case LDS: {
        const listener = messageType('envoy.config.listener.v3.Listener').decode(value) as any;
        const routes = new Set<string>();
        for (const chain of listener.filter_chains ?? []) {
          for (const filter of chain.filters ?? []) {
            if (filter.typed_config?.type_url !== HCM_TYPE) continue;
            const hcm = messageType('envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager').decode(filter.typed_config.value) as any;
            if (hcm.rds?.route_config_name) routes.add(hcm.rds.route_config_name);
          }
        }
        return { name: listener.name, references: [...routes] };
      }
      case EDS:
        return { name: (messageType('envoy.config.endpoint.v3.ClusterLoadAssignment').decode(value) as any).cluster_name, references: [] };
      case RDS:
        return { name: (messageType('envoy.config.route.v3.RouteConfiguration').decode(value) as any).name, references: [] };
      default:
        return { name: '', references: [] };
    }
  }
}

/** Envoy's ADS retry backoff (GrpcMuxImpl: JitteredExponentialBackOffStrategy, 500 ms to 30 s). */
const RETRY_BASE_MS = 500;
const RETRY_MAX_MS = 30_000;

/** HTTP/2 error codes by value (RFC 9113 section 7). */
const HTTP2_ERROR_CODES = ['NO_ERROR', 'PROTOCOL_ERROR', 'INTERNAL_ERROR', 'FLOW_CONTROL_ERROR', 'SETTINGS_TIMEOUT', 'STREAM_CLOSED', 'FRAME_SIZE_ERROR',
  'REFUSED_STREAM', 'CANCEL', 'COMPRESSION_ERROR', 'CONNECT_ERROR', 'ENHANCE_YOUR_CALM', 'INADEQUATE_SECURITY', 'HTTP_1_1_REQUIRED'];
function http2GoawayName(code: number): string {
  return HTTP2_ERROR_CODES[code] ?? String(code);
}

/** What a VM presents on a TLS connection: the CA it trusts, its workload certificate and key, the server name it expects. */
export interface ClientTls { ca: string; cert: string; key: string; servername: string }

/** A TCP (or TLS, ALPN h2) connection to the authority's host and port, from a given source address if any. */
function connectTo(authority: URL, localAddress: string | undefined, secure: ClientTls | undefined): net.Socket {
  const endpoint = { host: authority.hostname, port: Number(authority.port), ...(localAddress ? { localAddress } : {}) };
  return secure ? tls.connect({ ...endpoint, ...secure, ALPNProtocols: ['h2'] }) : net.connect(endpoint);
}

/** What a client tells its worker. */
export interface ClientEvents {
  configured(client: EnvoyClient, elapsedMs: number): void;
  /** A response arrived carrying the upstream's push stamp (`<RFC3339>/<n>`) for the given type. */
  /** `receivedMs`, `ackedMs`: wall clock (Date.now()), comparable with the stamp. */
  update(client: EnvoyClient, typeUrl: string, stamp: PushStamp, receivedMs: number, ackedMs: number): void;
  error(client: EnvoyClient, message: string): void;
}

interface TypeHold {
  /** name → content hash */
  resources: Map<string, string>;
  /** name → version (Delta, for initial_resource_versions on reconnect) */
  versions: Map<string, string>;
  references: Map<string, string[]>;
  /** EDS/RDS: names this client has subscribed to. */
  requested: Set<string>;
  versionInfo: string;
  nonce: string;
  received: boolean;
}

/** When the upstream pushed (wall clock) and its push counter, from a version `<RFC3339>/<n>`. */
export interface PushStamp {
  ms: number;
  push: number;
}

/** Whether push `a` is `b` or later (a restarted upstream counts again from 1, but later in time). */
export function notBefore(a: PushStamp, b: PushStamp): boolean {
  return a.ms > b.ms || (a.ms === b.ms && a.push >= b.push);
}

/** The upstream's push stamp `<RFC3339>/<push number>` (the simulated istiod and the baseline write it). */
export function stampOf(version: string): PushStamp | undefined {
  const slash = version.lastIndexOf('/');
  if (slash <= 0) return undefined;
  const ms = Date.parse(version.slice(0, slash));
  // The relay may append its own revision (`.<n>`) when its cache changed without an upstream push.
  const push = Number.parseInt(version.slice(slash + 1), 10);
  return Number.isNaN(ms) || !Number.isInteger(push) ? undefined : { ms, push };
}

/**
 * One simulated VM Envoy on its own HTTP/2 connection, subscribing like Envoy: CDS and LDS
 * wildcard, then EDS for the EDS clusters and RDS for the route names the listeners reference;
 * every response is ACKed (or, for a NACKing client, CDS responses are NACKed).
 */
export class EnvoyClient {
  private session: http2.ClientHttp2Session | undefined;
  private stream: http2.ClientHttp2Stream | undefined;
  private readonly types = new Map<string, TypeHold>();
  private sentNode = false;
  private connectStarted = 0;
  configuredAt: number | undefined;
  bytesReceived = 0;
  responses = 0;
  nacksSent = 0;
  reconnects = 0;
  /** ADS streams this client has opened (a new one after each that ended). */
  streamsOpened = 0;
  /** Stream retries since the last response (the exponent of the backoff). */
  private retryAttempts = 0;
  private closed = false;
  private keepVersions = false;
  /** When (wall clock) the current stream first served the client. */
  servedAt: number | undefined;

  constructor(
    readonly index: number,
    private readonly target: string,
    readonly protocol: XdsProtocol,
    private readonly node: NodeMessage,
    readonly nacks: boolean,
    private readonly decoder: ResourceDecoder,
    private readonly events: ClientEvents,
    /** The source address to connect from (each has its own ephemeral ports; fleet-layout.ts). */
    private readonly localAddress?: string,
    /** Connect over TLS with a workload certificate (the relay's TLS listener), not plaintext. */
    private readonly secure?: ClientTls,
  ) {}

  /** Opens the connection and subscribes; with `keepVersions`, comes back with what it holds. */
  connect(keepVersions = false): void {
    this.closed = false;
    this.keepVersions = keepVersions;
    this.connectStarted = performance.now();
    // A client coming back with its versions stays configured (it keeps serving its old config).
    if (!keepVersions) this.configuredAt = undefined;
    if (!keepVersions) this.types.clear();
    this.openStream();
  }

  /** The HTTP/2 connection, made anew only when the last one has gone (a stream's end keeps it, as Envoy's does). */
  private liveSession(): http2.ClientHttp2Session {
    const current = this.session;
    if (current && !current.closed && !current.destroyed) return current;
    const session = http2.connect(`${this.secure ? 'https' : 'http'}://${this.target}`, { createConnection: (authority: URL) => connectTo(authority, this.localAddress, this.secure) });
    this.session = session;
    session.on('error', (error) => this.events.error(this, `connection: ${error.message}`));
    // Why a server ended the connection: its GOAWAY's code says (and a stream it had not begun is then REFUSED_STREAM).
    session.on('goaway', (code) => { if (!this.closed) this.events.error(this, `GOAWAY from the server: code ${http2GoawayName(code)}`); });
    return session;
  }

  /** The ADS stream, with the node on its first request and every subscription the client holds. */
  private openStream(): void {
    this.sentNode = false;
    this.servedAt = undefined;
    this.streamsOpened++;
    const session = this.liveSession();
    const stream = session.request({
      ':method': 'POST', ':path': this.protocol === 'delta' ? AdsMethod.delta : AdsMethod.sotw,
      'content-type': 'application/grpc', te: 'trailers',
    });
    this.stream = stream;
    const deframer = new MessageDeframer(256 * 1024 * 1024);
    stream.on('data', (chunk: Buffer) => {
      this.bytesReceived += chunk.length;
      this.retryAttempts = 0;
      for (const message of deframer.push(chunk)) this.onMessage(message);
    });
    stream.on('trailers', (trailers) => {
      const status = Number(trailers['grpc-status'] ?? 0);
      if (status !== 0 && !this.closed && this.stream === stream) this.events.error(this, `stream ended: ${status} ${trailers['grpc-message'] ?? ''}`);
    });
    stream.on('error', (error) => { if (!this.closed && this.stream === stream) this.events.error(this, `stream: ${error.message}`); });
    stream.on('close', () => {
      if (this.closed || this.stream !== stream) return;
      // Like Envoy's gRPC mux: a new stream after a jittered exponential backoff (500 ms base, 30 s
      // cap, reset once a response arrives), on the same connection while it lasts, keeping what it holds.
      this.reconnects++;
      this.keepVersions = true;
      const ceiling = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** this.retryAttempts++);
      setTimeout(() => { if (!this.closed) this.openStream(); }, Math.random() * ceiling).unref();
    });
    this.subscribe(CDS, []);
    this.subscribe(LDS, []);
    for (const typeUrl of [EDS, RDS]) {
      const hold = this.types.get(typeUrl);
      if (hold && hold.requested.size > 0) this.subscribe(typeUrl, [...hold.requested]);
    }
  }

  close(): void {
    this.closed = true;
    this.stream?.close();
    this.session?.close();
    this.session?.destroy();
  }

  /** A hash of everything the client holds: equal hashes mean equal config. */
  configHash(): string {
    const hash = createHash('sha256');
    for (const typeUrl of [CDS, EDS, LDS, RDS]) {
      const resources = this.types.get(typeUrl)?.resources ?? new Map<string, string>();
      const names = typeUrl === EDS || typeUrl === RDS ? [...this.wanted(typeUrl)] : [...resources.keys()];
      for (const name of names.sort()) hash.update(`${typeUrl}|${name}|${resources.get(name) ?? '(missing)'}\n`);
    }
    return hash.digest('hex');
  }

  get connected(): boolean {
    return this.stream !== undefined && !this.stream.closed;
  }

  private hold(typeUrl: string): TypeHold {
    let hold = this.types.get(typeUrl);
    if (!hold) {
      hold = { resources: new Map(), versions: new Map(), references: new Map(), requested: new Set(), versionInfo: '', nonce: '', received: false };
      this.types.set(typeUrl, hold);
    }
    return hold;
  }

  private write(message: Buffer): void {
    if (this.stream && !this.stream.closed) this.stream.write(frameMessage(message));
  }

  private nodeOnce(): { node?: NodeMessage } {
    if (this.sentNode) return {};
    this.sentNode = true;
    return { node: this.node };
  }

  private subscribe(typeUrl: string, names: string[]): void {
    const hold = this.hold(typeUrl);
    if (this.protocol === 'delta') {
      const initial = this.keepVersions ? Object.fromEntries(hold.versions) : {};
      this.write(Envelopes.encodeDeltaRequest({ ...this.nodeOnce(), type_url: typeUrl, resource_names_subscribe: names, initial_resource_versions: initial }));
    } else {
      this.write(Envelopes.encodeRequest({ ...this.nodeOnce(), type_url: typeUrl, resource_names: names, version_info: this.keepVersions ? hold.versionInfo : '', response_nonce: '' }));
    }
  }

  private onMessage(bytes: Buffer): void {
    this.responses++;
    const receivedMs = Date.now();
    if (this.protocol === 'delta') this.onDelta(Envelopes.decodeDeltaResponse(bytes), receivedMs);
    else this.onSotw(Envelopes.decodeResponse(bytes), receivedMs);
  }

  private onSotw(response: DiscoveryResponse, receivedMs: number): void {
    const typeUrl = response.type_url;
    const hold = this.hold(typeUrl);
    const fullState = typeUrl === CDS || typeUrl === LDS;
    const incoming = this.take(typeUrl, response.resources);
    if (fullState) {
      hold.resources.clear();
      hold.references.clear();
    }
    for (const item of incoming) {
      hold.resources.set(item.name, item.hash);
      hold.references.set(item.name, item.references);
    }
    hold.received = true;
    const nack = this.nacks && typeUrl === CDS;
    const names = typeUrl === EDS || typeUrl === RDS ? [...this.wanted(typeUrl)] : [];
    this.write(Envelopes.encodeRequest({
      type_url: typeUrl, response_nonce: response.nonce, resource_names: names,
      version_info: nack ? hold.versionInfo : response.version_info,
      ...(nack ? { error_detail: this.nackStatus() } : {}),
    }));
    if (!nack) hold.versionInfo = response.version_info;
    hold.nonce = response.nonce;
    this.afterResponse(typeUrl, response.version_info, receivedMs);
  }

  private onDelta(response: DeltaDiscoveryResponse, receivedMs: number): void {
    const typeUrl = response.type_url;
    const hold = this.hold(typeUrl);
    for (const resource of response.resources) {
      if (!resource.resource) continue;
      const [item] = this.take(typeUrl, [resource.resource]);
      const name = resource.name || item!.name;
      hold.resources.set(name, item!.hash);
      hold.versions.set(name, resource.version);
      hold.references.set(name, item!.references);
    }
    for (const name of response.removed_resources ?? []) {
      hold.resources.delete(name);
      hold.versions.delete(name);
      hold.references.delete(name);
    }
    hold.received = true;
    const nack = this.nacks && typeUrl === CDS;
    this.write(Envelopes.encodeDeltaRequest({ type_url: typeUrl, response_nonce: response.nonce, ...(nack ? { error_detail: this.nackStatus() } : {}) }));
    this.afterResponse(typeUrl, response.system_version_info, receivedMs);
  }

  private nackStatus(): RpcStatus {
    this.nacksSent++;
    return { code: 3, message: 'bench: this simulated Envoy rejects CDS' };
  }

  private take(typeUrl: string, resources: AnyMessage[]): Decoded[] {
    return resources.map((resource) => this.decoder.decode(resource.type_url || typeUrl, resource.value));
  }

  /** EDS names the clusters need / RDS names the listeners need. */
  wanted(typeUrl: string): Set<string> {
    const from = this.types.get(typeUrl === EDS ? CDS : LDS);
    const names = new Set<string>();
    for (const references of from?.references.values() ?? []) for (const name of references) names.add(name);
    return names;
  }

  private afterResponse(typeUrl: string, version: string, receivedMs: number): void {
    // New clusters or listeners may reference names not yet subscribed, or drop some.
    if (typeUrl === CDS || typeUrl === LDS) {
      const dependent = typeUrl === CDS ? EDS : RDS;
      const wanted = this.wanted(dependent);
      const hold = this.hold(dependent);
      const missing = [...wanted].filter((name) => !hold.requested.has(name));
      const gone = [...hold.requested].filter((name) => !wanted.has(name));
      if (missing.length > 0 || gone.length > 0) {
        hold.requested = wanted;
        if (this.protocol === 'delta') {
          this.write(Envelopes.encodeDeltaRequest({ type_url: dependent, resource_names_subscribe: missing, resource_names_unsubscribe: gone }));
        } else {
          this.write(Envelopes.encodeRequest({ type_url: dependent, resource_names: [...wanted], version_info: hold.versionInfo, response_nonce: hold.nonce }));
        }
      }
    }
    const stamp = stampOf(version);
    if (stamp !== undefined && this.configuredAt !== undefined) this.events.update(this, typeUrl, stamp, receivedMs, Date.now());
    if (this.configuredAt === undefined && this.isConfigured()) {
      this.configuredAt = performance.now();
      this.events.configured(this, this.configuredAt - this.connectStarted);
    }
    // Served on this stream: it has answered (the relay sends nothing before the VM is registered)
    // and the client holds its full config. A VM that comes back with its versions over Delta is
    // sent only what changed, so not every type is answered again.
    if (this.servedAt === undefined && this.configuredAt !== undefined) this.servedAt = Date.now();
  }

  private isConfigured(): boolean {
    for (const typeUrl of [CDS, LDS]) if (!this.types.get(typeUrl)?.received) return false;
    for (const typeUrl of [EDS, RDS]) {
      const have = this.types.get(typeUrl)?.resources;
      for (const name of this.wanted(typeUrl)) if (!have?.has(name)) return false;
    }
    return true;
  }
}
