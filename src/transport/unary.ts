import { GrpcStatus } from '../errors.js';
import type { CallHandler, GrpcCall } from './grpc-server.js';

/** Adapts a request → response function to a unary gRPC method on the HTTP/2 server. */
export function unary(handle: (request: Buffer, call: GrpcCall) => Promise<Uint8Array>): CallHandler {
  return (call) => {
    let received = false;
    call.onMessage((request) => {
      if (received) {
        call.end(GrpcStatus.INVALID_ARGUMENT, 'a unary call takes exactly one message');
        return;
      }
      received = true;
      handle(request, call).then(
        (response) => {
          call.writeMessage(response);
          call.end();
        },
        (error: unknown) => call.fail(error),
      );
    });
  };
}
