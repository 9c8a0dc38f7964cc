import * as grpc from '@grpc/grpc-js';
import { AdsMethod, Envelopes,
  type DeltaDiscoveryRequest, type DeltaDiscoveryResponse, type DiscoveryRequest, type DiscoveryResponse, type XdsProtocol } from '../../src/xds/protocol/envelopes.js';

export { vmNode, type VmNodeOptions } from '../../src/sim/vm-node.js';

type Received<P> = P extends 'sotw' ? DiscoveryResponse : DeltaDiscoveryResponse;
type Sent<P> = P extends 'sotw' ? Partial<DiscoveryRequest> : Partial<DeltaDiscoveryRequest>;

/** A minimal ADS client on grpc-js for tests: send requests, await responses, see the status. */
export class AdsTestClient<P extends XdsProtocol> {
  readonly responses: Array<Received<P>> = [];
  private waiters: Array<() => void> = [];
  readonly status: Promise<grpc.StatusObject>;
  private readonly stream: grpc.ClientDuplexStream<Buffer, Buffer>;
  private readonly client: grpc.Client;
  private consumed = 0;
  private ended = false;
  private readonly ownsClient: boolean;

  /** With a `client` of the caller's, the stream rides it and `close()` leaves it open unless `ownsClient`. */
  constructor(target: string, readonly protocol: P, client?: grpc.Client, headers: Record<string, string> = {}, ownsClient = !client) {
    this.ownsClient = ownsClient;
    this.client = client ?? new grpc.Client(target, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    const identity = (b: Buffer) => b;
    const metadata = new grpc.Metadata();
    for (const [key, value] of Object.entries(headers)) metadata.set(key, value);
    this.stream = this.client.makeBidiStreamRequest(protocol === 'sotw' ? AdsMethod.sotw : AdsMethod.delta, identity, identity, metadata);
    this.stream.on('data', (bytes: Buffer) => {
      this.responses.push((protocol === 'sotw' ? Envelopes.decodeResponse(bytes) : Envelopes.decodeDeltaResponse(bytes)) as Received<P>);
      for (const waiter of this.waiters.splice(0)) waiter();
    });
    this.status = new Promise((resolve) => {
      this.stream.on('status', resolve);
      this.stream.on('error', () => {});
    });
    this.status.then(() => {
      this.ended = true;
      for (const waiter of this.waiters.splice(0)) waiter();
    });
  }

  send(request: Sent<P>): void {
    this.sendRaw(this.protocol === 'sotw'
      ? Envelopes.encodeRequest(request as Partial<DiscoveryRequest>)
      : Envelopes.encodeDeltaRequest(request as Partial<DeltaDiscoveryRequest>));
  }

  sendRaw(bytes: Buffer): void {
    this.stream.write(bytes);
  }

  /** The next response not yet returned by next(); rejects after `timeoutMs`. */
  async next(timeoutMs = 5000): Promise<Received<P>> {
    const deadline = Date.now() + timeoutMs;
    while (this.responses.length <= this.consumed) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error(`no response within ${timeoutMs} ms (have ${this.responses.length})`);
      if (this.ended) throw new Error(`the stream ended (have ${this.responses.length} responses)`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.waiters.push(() => { clearTimeout(timer); resolve(); });
      });
    }
    return this.responses[this.consumed++]!;
  }

  /** Waits for the next response of a given type, skipping others. */
  async nextOfType(typeUrl: string, timeoutMs = 5000): Promise<Received<P>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const response = await this.next(Math.max(1, deadline - Date.now()));
      if (response.type_url === typeUrl) return response;
    }
  }

  /** Resolves true if no response arrives within `ms`. */
  async quietFor(ms: number): Promise<boolean> {
    const before = this.responses.length;
    await new Promise((resolve) => setTimeout(resolve, ms));
    return this.responses.length === before;
  }

  get unread(): number {
    return this.responses.length - this.consumed;
  }

  /** Cancels the stream; closes the connection only if this client opened it. */
  close(): void {
    this.stream.cancel();
    if (this.ownsClient) this.client.close();
  }
}
