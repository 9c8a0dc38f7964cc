import * as grpc from '@grpc/grpc-js';
import { GrpcStatus, RelayError, UpstreamStatusError } from '../errors.js';
import type { Logger } from '../log.js';
import { ConcurrencyLimiter } from '../limits/concurrency-limiter.js';
import { Backoff, type BackoffPolicy } from '../transport/backoff.js';
import { xfccHeader, type AuthenticatedCaller } from './authenticator.js';

export const CreateCertificateMethod = '/istio.v1.auth.IstioCertificateService/CreateCertificate';

export interface CaForwarderOptions {
  target: string;
  credentials: grpc.ChannelCredentials;
  channelOptions?: grpc.ChannelOptions;
  maxConcurrent: number;
  maxQueued: number;
  timeoutMs: number;
  backoff: BackoffPolicy;
  log: Logger;
}

/** The VM's own credentials, as istiod must see them. */
export interface ForwardedCredentials {
  authorization?: string;
  clusterId?: string;
  /** Set when the VM proved itself to the relay with a client certificate. */
  verifiedCertificate?: AuthenticatedCaller;
}

/**
 * Forward mode: passes each CSR to istiod with the VM's credentials and returns istiod's answer
 * byte for byte. Storms queue behind a concurrency limit; UNAVAILABLE is retried with backoff
 * within the request's deadline.
 */
export class CaForwarder {
  private client: grpc.Client;
  private readonly limiter: ConcurrencyLimiter;

  constructor(private readonly options: CaForwarderOptions) {
    this.client = this.connect(options.credentials);
    this.limiter = new ConcurrencyLimiter(options.maxConcurrent, options.maxQueued, 'CSR forwarding');
  }

  private connect(credentials: grpc.ChannelCredentials): grpc.Client {
    return new grpc.Client(this.options.target, credentials, { 'grpc.keepalive_time_ms': 30_000, ...this.options.channelOptions });
  }

  /** A new connection with other credentials (istiod's root rotated); calls in flight finish on the old one. */
  replaceCredentials(credentials: grpc.ChannelCredentials): void {
    const old = this.client;
    this.client = this.connect(credentials);
    old.close();
  }

  forward(request: Buffer, credentials: ForwardedCredentials): Promise<Buffer> {
    const deadline = Date.now() + this.options.timeoutMs;
    return this.limiter.run(() => this.attempt(request, credentials, deadline, new Backoff(this.options.backoff)));
  }

  close(): void {
    this.client.close();
  }

  private async attempt(request: Buffer, credentials: ForwardedCredentials, deadline: number, backoff: Backoff): Promise<Buffer> {
    for (;;) {
      try {
        return await this.call(request, credentials, deadline);
      } catch (error) {
        const status = (error as grpc.ServiceError).code;
        const delay = backoff.nextDelayMs();
        if (status !== grpc.status.UNAVAILABLE || Date.now() + delay >= deadline) throw toRelayError(error as grpc.ServiceError);
        this.options.log.debug({ target: this.options.target, retryInMs: delay }, 'istiod CA unavailable; retrying');
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  private call(request: Buffer, credentials: ForwardedCredentials, deadline: number): Promise<Buffer> {
    const metadata = new grpc.Metadata();
    if (credentials.authorization) metadata.set('authorization', credentials.authorization);
    if (credentials.clusterId) metadata.set('clusterid', credentials.clusterId);
    if (credentials.verifiedCertificate) metadata.set('x-forwarded-client-cert', xfccHeader(credentials.verifiedCertificate));
    const identity = (bytes: Buffer) => bytes;
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(CreateCertificateMethod, identity, identity, request, metadata, { deadline },
        (error, response) => (error ? reject(error) : resolve(response!)));
    });
  }
}

/** istiod's status passes through to the VM as it was. */
function toRelayError(error: grpc.ServiceError): RelayError {
  const status = (error.code ?? GrpcStatus.INTERNAL) as GrpcStatus;
  return new UpstreamStatusError(status, `istiod CA: ${error.details || error.message}`, { cause: error });
}
