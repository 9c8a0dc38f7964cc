import * as grpc from '@grpc/grpc-js';

export interface ConnectionPoolOptions {
  target: string;
  size: number;
  credentials: grpc.ChannelCredentials;
  maxReceiveMessageBytes: number;
  /** Further channel options (e.g. the TLS server name). */
  channelOptions?: grpc.ChannelOptions;
}

/**
 * A fixed set of HTTP/2 connections to the upstream. Each client gets its own subchannel pool, so
 * each is a separate connection; streams go to the least loaded one (istiod allows 100000 streams
 * per connection, so a handful carries thousands of VMs).
 */
export class ConnectionPool {
  private readonly clients: grpc.Client[];
  private readonly load: number[];

  constructor(private readonly options: ConnectionPoolOptions) {
    this.clients = Array.from({ length: Math.max(1, options.size) }, () => new grpc.Client(options.target, options.credentials, {
      'grpc.use_local_subchannel_pool': 1,
      'grpc.max_receive_message_length': options.maxReceiveMessageBytes,
      'grpc.max_send_message_length': options.maxReceiveMessageBytes,
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.initial_reconnect_backoff_ms': 500,
      'grpc.max_reconnect_backoff_ms': 10_000,
      ...options.channelOptions,
    }));
    this.load = this.clients.map(() => 0);
    // Connect now rather than on the first stream, so readiness reflects the upstream at once.
    for (const client of this.clients) client.getChannel().getConnectivityState(true);
  }

  get target(): string {
    return this.options.target;
  }

  /** Opens a bidi stream on the least loaded connection; call `release` when it ends. */
  openStream(method: string, metadata: grpc.Metadata): { stream: grpc.ClientDuplexStream<Buffer, Buffer>; release: () => void } {
    let index = 0;
    for (let i = 1; i < this.load.length; i++) if (this.load[i]! < this.load[index]!) index = i;
    this.load[index]!++;
    const identity = (message: Buffer) => message;
    const stream = this.clients[index]!.makeBidiStreamRequest(method, identity, identity, metadata, {});
    let released = false;
    return {
      stream,
      release: () => {
        if (released) return;
        released = true;
        this.load[index]!--;
      },
    };
  }

  /** True once any connection has reached READY; asks idle ones to connect. */
  isConnected(): boolean {
    return this.clients.some((client) => client.getChannel().getConnectivityState(true) === grpc.connectivityState.READY);
  }

  streamsPerConnection(): number[] {
    return [...this.load];
  }

  close(): void {
    for (const client of this.clients) client.close();
  }
}
