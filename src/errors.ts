import { status as GrpcStatus } from '@grpc/grpc-js';

export { GrpcStatus };

/**
 * Every error code and the one gRPC status it is answered with. Codes are stable (callers, logs
 * and tests branch on them); the message is for humans.
 */
const STATUS_OF_CODE = {
  MR_MALFORMED_MESSAGE: GrpcStatus.INVALID_ARGUMENT,
  MR_MESSAGE_TIMEOUT: GrpcStatus.DEADLINE_EXCEEDED,
  MR_MISSING_NODE: GrpcStatus.INVALID_ARGUMENT,
  MR_BAD_TYPE_URL: GrpcStatus.INVALID_ARGUMENT,
  MR_TOO_MANY_NAMES: GrpcStatus.RESOURCE_EXHAUSTED,
  MR_TOO_MANY_TYPES: GrpcStatus.RESOURCE_EXHAUSTED,
  MR_TOO_MANY_REQUESTS: GrpcStatus.RESOURCE_EXHAUSTED,
  MR_MESSAGE_TOO_LARGE: GrpcStatus.RESOURCE_EXHAUSTED,
  MR_COMPRESSION_UNSUPPORTED: GrpcStatus.UNIMPLEMENTED,
  MR_UPSTREAM_UNAVAILABLE: GrpcStatus.UNAVAILABLE,
  /** Whatever istiod answered; carried by UpstreamStatusError. */
  MR_UPSTREAM_STATUS: GrpcStatus.UNKNOWN,
  MR_GROUP_CHANGED: GrpcStatus.UNAVAILABLE,
  MR_BAD_CONFIG: GrpcStatus.INVALID_ARGUMENT,
  MR_BAD_CA_FILES: GrpcStatus.FAILED_PRECONDITION,
  MR_BAD_CSR: GrpcStatus.INVALID_ARGUMENT,
  MR_BAD_TTL: GrpcStatus.INVALID_ARGUMENT,
  MR_UNAUTHENTICATED: GrpcStatus.UNAUTHENTICATED,
  MR_PERMISSION_DENIED: GrpcStatus.PERMISSION_DENIED,
  MR_CA_OVERLOADED: GrpcStatus.RESOURCE_EXHAUSTED,
  MR_CA_UNAVAILABLE: GrpcStatus.UNAVAILABLE,
  MR_CA_EXPIRED: GrpcStatus.FAILED_PRECONDITION,
  /** Try again later (admission, group creation rate): Envoy and istio-agent back off and retry. */
  MR_OVERLOADED: GrpcStatus.UNAVAILABLE,
  /** A limit this stream passed (buffer budget, maxGroups): retrying soon will not help. */
  MR_OVER_LIMIT: GrpcStatus.RESOURCE_EXHAUSTED,
  MR_REGISTRATION_FAILED: GrpcStatus.FAILED_PRECONDITION,
  MR_WORKLOAD_ENTRY_NOT_FOUND: GrpcStatus.NOT_FOUND,
  MR_INTERNAL: GrpcStatus.INTERNAL,
} as const satisfies Record<string, GrpcStatus>;

export type RelayErrorCode = keyof typeof STATUS_OF_CODE;

/** The project's one error type: a stable code, answered with its code's gRPC status. */
export class RelayError extends Error {
  constructor(readonly code: RelayErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RelayError';
  }

  get grpcStatus(): GrpcStatus {
    return STATUS_OF_CODE[this.code];
  }

  /** Turns anything thrown into a RelayError, keeping an existing one as it is. */
  static from(error: unknown): RelayError {
    if (error instanceof RelayError) return error;
    const message = error instanceof Error ? error.message : String(error);
    return new RelayError('MR_INTERNAL', message, { cause: error });
  }
}

/** istiod's own status, passed to the VM unchanged (a refused group, a CSR istiod's CA refused). */
export class UpstreamStatusError extends RelayError {
  constructor(readonly upstreamStatus: GrpcStatus, message: string, options?: { cause?: unknown }) {
    super('MR_UPSTREAM_STATUS', message, options);
  }

  override get grpcStatus(): GrpcStatus {
    return this.upstreamStatus;
  }
}
