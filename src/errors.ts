import { status as GrpcStatus } from '@grpc/grpc-js';

export { GrpcStatus };

/** Stable codes callers and tests branch on; the message is for humans. */
export type RelayErrorCode =
  | 'MR_MALFORMED_MESSAGE'
  | 'MR_MISSING_NODE'
  | 'MR_BAD_TYPE_URL'
  | 'MR_TOO_MANY_NAMES'
  | 'MR_MESSAGE_TOO_LARGE'
  | 'MR_COMPRESSION_UNSUPPORTED'
  | 'MR_UNKNOWN_METHOD'
  | 'MR_UPSTREAM_UNAVAILABLE'
  | 'MR_UPSTREAM_REFUSED'
  | 'MR_GROUP_CHANGED'
  | 'MR_SHUTTING_DOWN'
  | 'MR_BAD_CONFIG'
  | 'MR_BAD_CSR'
  | 'MR_BAD_TTL'
  | 'MR_UNAUTHENTICATED'
  | 'MR_PERMISSION_DENIED'
  | 'MR_CA_OVERLOADED'
  | 'MR_CA_UNAVAILABLE'
  | 'MR_OVERLOADED'
  | 'MR_REGISTRATION_FAILED'
  | 'MR_INTERNAL';

/** The project's one error type: a stable code plus the gRPC status it maps to. */
export class RelayError extends Error {
  constructor(
    readonly code: RelayErrorCode,
    readonly grpcStatus: GrpcStatus,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'RelayError';
  }

  /** Turns anything thrown into a RelayError, keeping an existing one as it is. */
  static from(error: unknown): RelayError {
    if (error instanceof RelayError) return error;
    const message = error instanceof Error ? error.message : String(error);
    return new RelayError('MR_INTERNAL', GrpcStatus.INTERNAL, message, { cause: error });
  }
}
