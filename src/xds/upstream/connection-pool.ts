import * as grpc from '@grpc/grpc-js';

export interface ConnectionPoolOptions {
  target: string;
  size: number;
  credentials: grpc.ChannelCredentials;
  maxReceiveMessageBytes: number;
  /** HTTP/2 PING interval and how long a PING may go unanswered before the connection is dead. */
  keepalive: { intervalMs: number; timeoutMs: number };
  /** Further channel options (e.g. the TLS server name). */
  channelOptions?: grpc.ChannelOptions;
}

/**
 * A fixed set of HTTP/2 connections to the upstream. Each client gets its own subchannel pool, so
 * each is a separate connection; streams go to the least loaded one (istiod allows 100000 streams
 * per connection, so a handful carries thousands of VMs).
 */
export class ConnectionPool {
  private clients: grpc.Client[];
  private load: number[];
  /** Waiting for a READY connection (whenConnected), and whether the connections are being watched for them. */
  private readonly connectWaiters = new Set<() => void>();
  private readonly watched = new Set<UpstreamChannel>();

  constructor(private readonly options: ConnectionPoolOptions) {
    this.clients = this.connect(options.credentials);
    this.load = this.clients.map(() => 0);
  }

  private connect(credentials: grpc.ChannelCredentials): grpc.Client[] {
    const clients = Array.from({ length: Math.max(1, this.options.size) }, () => new grpc.Client(this.options.target, credentials, {
      'grpc.use_local_subchannel_pool': 1,
      'grpc.max_receive_message_length': this.options.maxReceiveMessageBytes,
      'grpc.max_send_message_length': this.options.maxReceiveMessageBytes,
      'grpc.keepalive_time_ms': this.options.keepalive.intervalMs,
      'grpc.keepalive_timeout_ms': this.options.keepalive.timeoutMs,
      'grpc.initial_reconnect_backoff_ms': 500,
      'grpc.max_reconnect_backoff_ms': 10_000,
      ...this.options.channelOptions,
    }));
    // Connect now rather than on the first stream, so readiness reflects the upstream at once.
    for (const client of clients) client.getChannel().getConnectivityState(true);
    return clients;
  }

  /**
   * New connections with other credentials (the upstream TLS files changed). Streams already open
   * stay on the old connections until they end: grpc-js lets started calls finish on a closed channel.
   */
  replaceCredentials(credentials: grpc.ChannelCredentials): void {
    const old = this.clients;
    this.clients = this.connect(credentials);
    this.load = this.clients.map(() => 0);
    for (const client of old) client.close();
  }

  get target(): string {
    return this.options.target;
  }

  /**
   * Opens a bidi stream on the least loaded READY connection (the least loaded one if none is);
   * call `release` when it ends. `connectionLive` tells, once the stream has ended, whether the
   * connection it rode is still READY: if not, the connection was what ended it.
   */
  openStream(method: string, metadata: grpc.Metadata): { stream: grpc.ClientDuplexStream<Buffer, Buffer>; release: () => void; connectionLive: () => boolean } {
    const ready = this.clients.map((client) => client.getChannel().getConnectivityState(true) === grpc.connectivityState.READY);
    let index = 0;
    for (let i = 1; i < this.load.length; i++) {
      if (ready[i] !== ready[index] ? ready[i] : this.load[i]! < this.load[index]!) index = i;
    }
    const load = this.load;
    load[index]!++;
    const identity = (message: Buffer) => message;
    const client = this.clients[index]!;
    const stream = client.makeBidiStreamRequest(method, identity, identity, metadata, {});
    let released = false;
    return {
      stream,
      connectionLive: () => client.getChannel().getConnectivityState(false) === grpc.connectivityState.READY,
      release: () => {
        if (released) return;
        released = true;
        // A stream opened before the credentials changed counts against the old connections.
        load[index]!--;
      },
    };
  }

  /** True once any connection has reached READY; asks idle ones to connect. */
  isConnected(): boolean {
    return this.clients.some((client) => client.getChannel().getConnectivityState(true) === grpc.connectivityState.READY);
  }

  /**
   * Calls `listener` once a connection is READY (at once if one is), asking idle connections to
   * connect meanwhile: grpc-js paces the attempts with its reconnect backoff. Returns a cancel.
   */
  whenConnected(listener: () => void): () => void {
    if (this.isConnected()) {
      queueMicrotask(listener);
      return () => {};
    }
    this.connectWaiters.add(listener);
    for (const client of this.clients) {
      const channel = client.getChannel();
      if (this.watched.has(channel)) continue;
      this.watched.add(channel);
      this.watch(channel);
    }
    return () => this.connectWaiters.delete(listener);
  }

  /** Follows one connection's state until it is READY, nobody waits any more, or it was replaced. */
  private watch(channel: UpstreamChannel): void {
    const state = channel.getConnectivityState(true);
    const current = this.clients.some((client) => client.getChannel() === channel);
    if (this.connectWaiters.size === 0 || !current || state === grpc.connectivityState.SHUTDOWN) {
      this.watched.delete(channel);
      return;
    }
    if (state === grpc.connectivityState.READY) {
      this.watched.delete(channel);
      const waiters = [...this.connectWaiters];
      this.connectWaiters.clear();
      for (const waiter of waiters) waiter();
      return;
    }
    // A finite deadline: grpc-js turns it into a timer, and the watch simply starts again.
    channel.watchConnectivityState(state, Date.now() + WATCH_DEADLINE_MS, () => this.watch(channel));
  }

  close(): void {
    this.connectWaiters.clear();
    for (const client of this.clients) client.close();
  }
}

const WATCH_DEADLINE_MS = 60_000;

type UpstreamChannel = ReturnType<grpc.Client['getChannel']>;
