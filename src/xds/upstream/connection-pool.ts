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

  /** Opens a bidi stream on the least loaded connection; call `release` when it ends. */
  openStream(method: string, metadata: grpc.Metadata): { stream: grpc.ClientDuplexStream<Buffer, Buffer>; release: () => void } {
    let index = 0;
    for (let i = 1; i < this.load.length; i++) if (this.load[i]! < this.load[index]!) index = i;
    const load = this.load;
    load[index]!++;
    const identity = (message: Buffer) => message;
    const stream = this.clients[index]!.makeBidiStreamRequest(method, identity, identity, metadata, {});
    let released = false;
    return {
      stream,
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

  close(): void {
    for (const client of this.clients) client.close();
  }
}
