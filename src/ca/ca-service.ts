import { performance } from 'node:perf_hooks';
import { GrpcStatus, RelayError } from '../errors.js';
import type { Logger } from '../log.js';
import type { GrpcCall, GrpcServer } from '../transport/grpc-server.js';
import { unary } from '../transport/unary.js';
import type { AdmissionControl } from '../limits/admission-control.js';
import { messageType } from '../xds/protocol/protos.js';
import { authenticateCaller, type AuthenticatorOptions } from './authenticator.js';
import type { CaForwarder } from './ca-forwarder.js';
import { CreateCertificateMethod } from './ca-forwarder.js';
import type { CaStats } from './ca-stats.js';
import type { SigningPool } from './signing-pool.js';

interface IstioCertificateRequest {
  csr: string;
  validity_duration: number | { toNumber(): number };
}

const requestType = () => messageType('istio.v1.auth.IstioCertificateRequest');
const responseType = () => messageType('istio.v1.auth.IstioCertificateResponse');

export type CaService =
  | { mode: 'local'; signing: SigningPool; authentication: AuthenticatorOptions }
  | { mode: 'forward'; forwarder: CaForwarder; authentication: AuthenticatorOptions };

function decodeRequest(bytes: Buffer): IstioCertificateRequest {
  let request: IstioCertificateRequest;
  try {
    request = requestType().decode(bytes) as unknown as IstioCertificateRequest;
  } catch (error) {
    throw new RelayError('MR_BAD_CSR', `malformed IstioCertificateRequest: ${(error as Error).message}`);
  }
  if (!request.csr) throw new RelayError('MR_BAD_CSR', 'IstioCertificateRequest has no csr');
  return request;
}

/**
 * `istio.v1.auth.IstioCertificateService/CreateCertificate` on the relay's listeners: local signing
 * for the authenticated identity, or forwarding to istiod with the VM's own credentials.
 */
export function registerCaService(server: GrpcServer, service: CaService, stats: CaStats, log: Logger, admission?: AdmissionControl): void {
  server.register(CreateCertificateMethod, unary(async (bytes, call) => {
    const started = performance.now();
    stats.csrs++;
    try {
      await admission?.admit('new');
      const request = decodeRequest(bytes);
      const response = service.mode === 'local' ? await signLocally(service, request, call) : await forward(service, bytes, call);
      stats.issued++;
      stats.onIssued?.((performance.now() - started) / 1000);
      return response;
    } catch (error) {
      const relayError = RelayError.from(error);
      if (relayError.grpcStatus === GrpcStatus.UNAUTHENTICATED) stats.authenticationFailures++;
      stats.countError(GrpcStatus[relayError.grpcStatus]);
      log.warn({ code: relayError.code, status: GrpcStatus[relayError.grpcStatus], err: relayError.message, peer: call.peer.address }, 'CSR refused');
      throw relayError;
    }
  }));
}

async function signLocally(service: Extract<CaService, { mode: 'local' }>, request: IstioCertificateRequest, call: GrpcCall): Promise<Buffer> {
  const caller = await authenticateCaller(call, service.authentication);
  const validity = typeof request.validity_duration === 'number' ? request.validity_duration : request.validity_duration.toNumber();
  const chain = await service.signing.sign(request.csr, caller.identity, validity);
  return Buffer.from(responseType().encode({ cert_chain: chain }).finish());
}

async function forward(service: Extract<CaService, { mode: 'forward' }>, bytes: Buffer, call: GrpcCall): Promise<Buffer> {
  // A client certificate is checked here, to be vouched for in XFCC; a bearer token goes to istiod
  // as it came, and istiod verifies it.
  const verifiedCertificate = call.peer.certificate ? await authenticateCaller(call, { trustDomain: service.authentication.trustDomain }) : undefined;
  const authorization = call.header('authorization');
  const clusterId = call.header('clusterid');
  if (!verifiedCertificate && !authorization) {
    throw new RelayError('MR_UNAUTHENTICATED', 'no credentials: present a client certificate or an "authorization: Bearer <service-account JWT>" header');
  }
  return service.forwarder.forward(bytes, {
    ...(authorization ? { authorization } : {}),
    ...(clusterId ? { clusterId } : {}),
    ...(verifiedCertificate ? { verifiedCertificate } : {}),
  });
}

