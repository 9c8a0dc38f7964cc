import http2 from 'node:http2';
import net, { type AddressInfo, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { GrpcStatus, RelayError } from '../errors.js';
import type { Logger } from '../log.js';
import { MessageDeframer, encodeGrpcMessage, frameMessage } from './grpc-framing.js';
import { BufferBudget, type BudgetHolder } from './buffer-budget.js';
import { formatAddress, type ListenAddress } from './listen-address.js';
import { manageConnection, type ConnectionPolicy } from './connection-lifecycle.js';
import type { ConnectionGate } from './connection-gate.js';
import type { EventLoopStalls } from './event-loop-stalls.js';
import { LISTEN_BACKLOG } from '../limits/accept-queue.js';

export interface PeerInfo {
  address: string;
  /** The verified client certificate when the peer presented one over TLS. */
  certificate?: ReturnType<TLSSocket['getPeerCertificate']>;
  certificateAuthorized: boolean;
}

/** What a call may hold: of messages it has not received whole, and of responses not yet sent. */
export interface BufferLimits {
  maxMessageBytes: number;
  /** Shared by every call of the process. */
  budget: BufferBudget;
  /** A message begun must be whole within this long. */
  partialMessageTimeoutMs: number;
}

const EVICTED_MESSAGE = 'the relay is over its buffer budget and this stream held the most of it (responses it does not read, or a message it does not finish)';

/**
 * One gRPC call on a raw HTTP/2 stream. Writes take pre-framed bytes so that one serialized
 * response can be written to many streams without a copy per stream (docs/ISTIO-FACTS.md).
 */
export class GrpcCall implements BudgetHolder {
  private headersSent = false;
  private finished = false;
  private readonly deframer: MessageDeframer;
  /** Bytes of an unfinished message this call holds of the budget, and its deadline. */
  private receiving = 0;
  /** Frames written but not yet handed to the connection (the peer's flow-control window is shut). */
  private readonly queued: Buffer[] = [];
  private partialTimer: NodeJS.Timeout | undefined;
  private messagesReceived = 0;
  progressAt = performance.now();
  private messageListener: (message: Buffer) => void = () => {};
  private readonly closeListeners: Array<() => void> = [];

  constructor(
    private readonly stream: http2.ServerHttp2Stream,
    readonly path: string,
    readonly headers: http2.IncomingHttpHeaders,
    readonly peer: PeerInfo,
    private readonly limits: BufferLimits,
  ) {
    this.deframer = new MessageDeframer(limits.maxMessageBytes);
    limits.budget.add(this);
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('end', () => this.onHalfClose());
    stream.on('error', () => { /* reported through 'close'; a reset peer is not an error of ours */ });
    stream.on('close', () => {
      this.finished = true;
      this.releaseBudget();
      for (const listener of this.closeListeners.splice(0)) listener();
    });
  }

  private gzip = false;

  /**
   * Sends this call's responses gzip-compressed, if the client accepts gzip (grpc-accept-encoding)
   * and nothing was sent yet; returns whether they will be.
   */
  useGzip(): boolean {
    if (this.headersSent) return this.gzip;
    const accepted = (this.header('grpc-accept-encoding') ?? '').split(',').map((encoding) => encoding.trim());
    this.gzip = accepted.includes('gzip');
    return this.gzip;
  }

  /** One request header's value (the first, if it was sent more than once). */
  header(name: string): string | undefined {
    const value = this.headers[name];
    return Array.isArray(value) ? value[0] : value;
  }

  /** The caller's metadata: every header but HTTP/2's pseudo-headers, repeated ones joined with ','. */
  metadata(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [key, value] of Object.entries(this.headers)) {
      if (key.startsWith(':') || value === undefined) continue;
      out[key] = Array.isArray(value) ? value.join(',') : String(value);
    }
    return out;
  }

  onMessage(listener: (message: Buffer) => void): void {
    this.messageListener = listener;
  }

  onClose(listener: () => void): void {
    if (this.finished && this.stream.closed) listener();
    else this.closeListeners.push(listener);
  }

  onDrain(listener: () => void): void {
    this.stream.on('drain', listener);
  }

  get closed(): boolean {
    return this.finished || this.stream.closed || this.stream.destroyed;
  }

  /** The HTTP/2 connection this call rides on. */
  get session(): http2.Http2Session | undefined {
    return this.stream.session;
  }

  /** True while the stream's write buffer is over its high-water mark. */
  get needsDrain(): boolean {
    return this.stream.writableNeedDrain;
  }

  /** Writes one already-framed message; returns false when the caller should wait for drain. */
  writeFrame(frame: Buffer): boolean {
    if (this.closed) return false;
    this.sendHeaders();
    const { budget } = this.limits;
    this.queued.push(frame);
    budget.queueFrame(frame);
    const writable = this.stream.write(frame, () => this.frameSent(frame));
    return budget.makeRoom(this, 0) && writable;
  }

  /** Makes room in the budget for a response of `bytes` about to be built; false when this call was ended instead. */
  reserve(bytes: number): boolean {
    return this.limits.budget.makeRoom(this, bytes);
  }

  private frameSent(frame: Buffer): void {
    this.progressAt = performance.now();
    const index = this.queued.indexOf(frame);
    if (index < 0) return;
    this.queued.splice(index, 1);
    this.limits.budget.releaseFrame(frame);
  }

  heldBytes(): number {
    let bytes = this.receiving;
    for (const frame of this.queued) bytes += this.limits.budget.shareOf(frame);
    return bytes;
  }

  /**
   * Ended by the budget. With nothing queued the status goes out as trailers; with responses stuck
   * behind a shut window it cannot, so the stream is reset with ENHANCE_YOUR_CALM, which gRPC maps
   * to RESOURCE_EXHAUSTED (grpc PROTOCOL-HTTP2.md, "Errors").
   */
  evict(): void {
    if (this.closed) return;
    const stuck = this.queued.length > 0;
    this.releaseBudget();
    if (!stuck) {
      this.fail(new RelayError('MR_OVER_LIMIT', EVICTED_MESSAGE));
      return;
    }
    this.finished = true;
    this.stream.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  }

  private releaseBudget(): void {
    const { budget } = this.limits;
    budget.remove(this);
    for (const frame of this.queued.splice(0)) budget.releaseFrame(frame);
    this.setReceiving(0);
  }

  writeMessage(message: Uint8Array): boolean {
    return this.writeFrame(frameMessage(message));
  }

  /** Ends the call with a status; a no-op once the call has ended. */
  end(code: GrpcStatus = GrpcStatus.OK, message = ''): void {
    if (this.closed) return;
    this.finished = true;
    const trailers: http2.OutgoingHttpHeaders = { 'grpc-status': String(code) };
    if (message) trailers['grpc-message'] = encodeGrpcMessage(message);
    if (!this.headersSent) {
      // Trailers-Only response.
      this.headersSent = true;
      this.stream.respond({ ':status': 200, 'content-type': 'application/grpc', ...trailers }, { endStream: true });
      return;
    }
    this.pendingTrailers = trailers;
    this.stream.end();
  }

  fail(error: unknown): void {
    const relayError = RelayError.from(error);
    this.end(relayError.grpcStatus, relayError.message);
  }

  private pendingTrailers: http2.OutgoingHttpHeaders = { 'grpc-status': '0' };

  private sendHeaders(): void {
    if (this.headersSent) return;
    this.headersSent = true;
    this.stream.respond(
      { ':status': 200, 'content-type': 'application/grpc', 'grpc-accept-encoding': 'identity', ...(this.gzip ? { 'grpc-encoding': 'gzip' } : {}) },
      { waitForTrailers: true },
    );
    this.stream.on('wantTrailers', () => this.stream.sendTrailers(this.pendingTrailers));
  }

  private onData(chunk: Buffer): void {
    if (this.finished) return;
    this.progressAt = performance.now();
    let messages: Buffer[];
    try {
      messages = this.deframer.push(chunk);
    } catch (error) {
      this.fail(error);
      return;
    }
    const more = this.deframer.pending > this.receiving;
    this.setReceiving(this.deframer.pending);
    if (more && !this.limits.budget.enforce(this)) return;
    this.messagesReceived += messages.length;
    for (const message of messages) {
      if (this.finished) return;
      this.messageListener(message);
    }
  }

  /** Counts `bytes` of an unfinished message against the budget (0: none), with its deadline. */
  private setReceiving(bytes: number): void {
    this.limits.budget.receive(bytes - this.receiving);
    this.receiving = bytes;
    if (bytes === 0) {
      clearTimeout(this.partialTimer);
      this.partialTimer = undefined;
    } else if (!this.partialTimer && !this.finished) {
      this.partialTimer = setTimeout(() => this.fail(new RelayError('MR_MESSAGE_TIMEOUT', `a message was begun but not finished within ${this.limits.partialMessageTimeoutMs / 1000} s`)), this.limits.partialMessageTimeoutMs);
      this.partialTimer.unref();
    }
  }

  /** The client closed its side: an unfinished message, or no request at all, will never come. */
  private onHalfClose(): void {
    if (this.finished) return;
    if (this.deframer.pending > 0) this.fail(new RelayError('MR_MALFORMED_MESSAGE', 'the client closed its side in the middle of a message'));
    else if (this.messagesReceived === 0) this.fail(new RelayError('MR_MALFORMED_MESSAGE', 'the client closed its side without sending a request'));
  }
}

export type CallHandler = (call: GrpcCall) => void;

/**
 * Client certificates are requested but not required: VMs may authenticate with a JWT instead.
 * A presented certificate is verified against the client CA; the result is on `call.peer`.
 */
function secureContextOptions(tls: TlsOptions) {
  return { key: tls.key, cert: tls.cert, ...(tls.clientCa ? { ca: tls.clientCa, requestCert: true, rejectUnauthorized: false } : {}) };
}

const DEFAULT_SESSION_MEMORY_MB = 512;

function listenOn(server: net.Server, address: ListenAddress): Promise<ListenAddress> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    // A reconnect storm opens thousands of connections at once: Node's default backlog (511)
    // drops SYNs, which clients retry only after 1, 3, 7, 15… s.
    server.listen({ port: address.port, host: address.host, backlog: LISTEN_BACKLOG }, () => {
      server.off('error', reject);
      const bound = server.address() as AddressInfo;
      resolve({ host: bound.address, port: bound.port });
    });
  });
}

export interface GrpcServerOptions {
  maxMessageBytes: number;
  /** Unfinished messages and unsent responses across calls (shared by a process's servers); 256 MiB by default. */
  bufferBudget?: BufferBudget;
  partialMessageTimeoutMs?: number;
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection. */
  maxStreamsPerConnection: number;
  /** Node's maxSessionMemory, in MB: data queued on one connection beyond it refuses new streams. */
  maxConnectionMemoryMb?: number;
  connections?: ConnectionPolicy;
  /** The process's connection limit, shared by its listeners (docs/CAPACITY.md). */
  gate?: ConnectionGate;
  /** The process's event-loop stalls, which keepalive does not hold against a peer. */
  stalls?: EventLoopStalls;
  log: Logger;
}

export interface TlsOptions {
  key: Buffer;
  cert: Buffer;
  /** When set, client certificates are requested and verified against it. */
  clientCa?: Buffer;
}

/**
 * A gRPC server written directly on node:http2: grpc-js copies each message per stream, which
 * dominates fan-out cost; writing one pre-framed buffer to every stream does not (docs/ISTIO-FACTS.md).
 */
export class GrpcServer {
  private readonly handlers = new Map<string, { handler: CallHandler; longLived: boolean }>();
  private readonly servers: Array<http2.Http2Server | http2.Http2SecureServer> = [];
  /** The listening sockets of `listen`, with the address each was asked for (to listen again on). */
  private readonly listeners: Array<{ socket: net.Server; requested: ListenAddress }> = [];
  private readonly sessions = new Set<http2.Http2Session>();
  private readonly calls = new Set<GrpcCall>();
  private readonly longLivedCalls = new WeakSet<GrpcCall>();
  private secureServer: http2.Http2SecureServer | undefined;

  private readonly bufferLimits: BufferLimits;

  constructor(private readonly options: GrpcServerOptions) {
    this.bufferLimits = {
      maxMessageBytes: options.maxMessageBytes,
      budget: options.bufferBudget ?? new BufferBudget(256 * 1024 * 1024),
      partialMessageTimeoutMs: options.partialMessageTimeoutMs ?? 30_000,
    };
  }

  /**
   * `longLived` calls (ADS streams) are ended on shutdown so clients reconnect elsewhere; others
   * (unary CSRs) are left to finish within the grace period.
   */
  register(path: string, handler: CallHandler, options: { longLived?: boolean } = {}): void {
    this.handlers.set(path, { handler, longLived: options.longLived ?? false });
  }

  /** Open HTTP/2 connections. */
  get connections(): number {
    return this.sessions.size;
  }

  /**
   * Accepts on `address`. The sockets are accepted by a plain net.Server and passed to the HTTP/2
   * (or TLS) server as `adopt` does, so the connection gate sees each before any byte is read.
   */
  async listen(address: ListenAddress, tls?: TlsOptions): Promise<ListenAddress> {
    const { accept } = this.adopt(tls, false);
    const socket = net.createServer(accept);
    socket.on('error', (error) => this.options.log.error({ err: error }, 'listener error'));
    const bound = await listenOn(socket, address);
    this.listeners.push({ socket, requested: address });
    this.options.log.info({ address: formatAddress(bound), tls: !!tls }, 'gRPC listener up');
    return bound;
  }

  /** Whether this server binds listeners of its own (not when it is handed connections). */
  get listens(): boolean {
    return this.listeners.length > 0;
  }

  /** Whether this server's listeners accept (a worker at its share of the pod's connections stops). */
  get accepting(): boolean {
    return this.listeners.some((listener) => listener.socket.listening);
  }

  /**
   * Stops accepting without touching open connections. Under node:cluster the listening socket is
   * shared by the workers, so the others go on accepting on it.
   */
  stopAccepting(): void {
    for (const { socket } of this.listeners) if (socket.listening) socket.close();
  }

  /** Accepts again, on the address first asked for (node:cluster gives a worker the shared socket for it). */
  async resumeAccepting(): Promise<void> {
    await Promise.all(this.listeners.filter(({ socket }) => !socket.listening).map(({ socket, requested }) => listenOn(socket, requested)));
  }

  /**
   * Serves connections accepted elsewhere (a worker is handed its VMs' sockets by the coordinator,
   * docs/ARCHITECTURE.md "Workers"): `accept` each socket; nothing is bound here. A socket accepted
   * paused (the coordinator's) is resumed once it is in the HTTP/2 server's hands.
   */
  adopt(tls?: TlsOptions, paused = true): { accept(socket: Socket): void } {
    const server = this.open(tls);
    const gate = this.options.gate;
    return {
      accept: (socket) => {
        if (gate && !gate.admit(socket)) return;
        server.emit('connection', socket);
        if (paused) socket.resume();
      },
    };
  }

  private open(tls?: TlsOptions): http2.Http2Server | http2.Http2SecureServer {
    const settings = { maxConcurrentStreams: this.options.maxStreamsPerConnection };
    // Node counts every byte queued on a connection against maxSessionMemory (10 MB by default) and
    // refuses new streams past it; a fan-out to many streams of one connection queues far more.
    const maxSessionMemory = this.options.maxConnectionMemoryMb ?? DEFAULT_SESSION_MEMORY_MB;
    const server = tls
      ? http2.createSecureServer({ ...secureContextOptions(tls), settings, maxSessionMemory })
      : http2.createServer({ settings, maxSessionMemory });
    server.on('session', (session: http2.Http2Session) => {
      this.sessions.add(session);
      session.on('error', (error) => this.options.log.debug({ err: error }, 'http2 session error'));
      session.on('close', () => this.sessions.delete(session));
      if (this.options.connections) {
        manageConnection(session, this.options.connections, () => {
          for (const call of this.calls) if (this.longLivedCalls.has(call) && call.session === session) call.end(GrpcStatus.UNAVAILABLE, 'connection reached its maximum age');
        }, Math.random, this.options.stalls);
      }
    });
    server.on('stream', (stream, headers) => this.onStream(stream, headers));
    server.on('sessionError', (error) => this.options.log.debug({ err: error }, 'http2 session error'));
    server.on('tlsClientError', (error) => this.options.log.debug({ err: error.message }, 'TLS handshake failed'));
    this.servers.push(server);
    if (tls) this.secureServer = server as http2.Http2SecureServer;
    return server;
  }

  /** Replaces the serving certificate (and client CA) of the TLS listener for new connections. */
  updateTls(tls: TlsOptions): void {
    this.secureServer?.setSecureContext(secureContextOptions(tls));
  }

  /**
   * Graceful stop: no new connections, GOAWAY on every connection (no new streams), long-lived
   * streams ended with UNAVAILABLE so clients reconnect to another replica, in-flight unary calls
   * given until the grace period to finish; whatever is left is then destroyed.
   */
  async close(graceMs = 0): Promise<void> {
    this.stopAccepting();
    const closed = Promise.all(this.servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
    for (const session of this.sessions) session.close();
    for (const call of this.calls) if (this.longLivedCalls.has(call)) call.end(GrpcStatus.UNAVAILABLE, 'server shutting down');
    const deadline = Date.now() + graceMs;
    while (this.calls.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    for (const call of this.calls) call.end(GrpcStatus.UNAVAILABLE, 'server shutting down');
    for (const session of this.sessions) session.destroy();
    await closed;
  }

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    stream.on('error', () => {});
    if (headers[':method'] !== 'POST') {
      stream.respond({ ':status': 405 }, { endStream: true });
      return;
    }
    const contentType = String(headers['content-type'] ?? '');
    if (!contentType.startsWith('application/grpc')) {
      stream.respond({ ':status': 415 }, { endStream: true });
      return;
    }
    const path = String(headers[':path'] ?? '');
    const socket = stream.session?.socket as TLSSocket | undefined;
    const peerCertificate = socket && typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate() : undefined;
    const peer: PeerInfo = {
      address: `${socket?.remoteAddress ?? ''}:${socket?.remotePort ?? ''}`,
      certificateAuthorized: !!socket?.authorized,
      ...(peerCertificate && Object.keys(peerCertificate).length > 0 ? { certificate: peerCertificate } : {}),
    };
    const call = new GrpcCall(stream, path, headers, peer, this.bufferLimits);
    const registered = this.handlers.get(path);
    if (!registered) {
      call.end(GrpcStatus.UNIMPLEMENTED, `unknown method ${path}`);
      return;
    }
    const { handler, longLived } = registered;
    this.calls.add(call);
    if (longLived) this.longLivedCalls.add(call);
    call.onClose(() => this.calls.delete(call));
    try {
      handler(call);
    } catch (error) {
      this.options.log.error({ err: error, path }, 'call handler threw');
      call.fail(error);
    }
  }
}
