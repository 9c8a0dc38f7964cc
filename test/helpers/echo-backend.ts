import * as grpc from '@grpc/grpc-js';

export const echoMethod = '/meshrelay.test.Echo/Who';
const identity = (b: Buffer) => b;

const service: grpc.ServiceDefinition = {
  Who: {
    path: echoMethod,
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};

/** A real grpc-js server on loopback that answers with its own name. */
export async function startEchoBackend(name: string): Promise<{ port: number; close(): Promise<void> }> {
  const server = new grpc.Server();
  server.addService(service, {
    Who: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => callback(null, Buffer.from(name)),
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound)));
  });
  // A graceful shutdown waits for every client session to go; a client process that died may leave
  // one half-open, so the backend is forced down after a second.
  const close = () => new Promise<void>((resolve) => {
    const force = setTimeout(() => { server.forceShutdown(); resolve(); }, 1000);
    server.tryShutdown(() => { clearTimeout(force); resolve(); });
  });
  return { port, close };
}

export function callWho(client: grpc.Client, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(echoMethod, identity, identity, Buffer.alloc(0), new grpc.Metadata(), { deadline: Date.now() + timeoutMs },
      (error, reply) => (error ? reject(error) : resolve(reply!.toString())));
  });
}

/** A grpc-js-xds bootstrap for a proxyless client (`GENERATOR=grpc`) of `namespace`, talking xDS to `serverUri`. */
export function proxylessBootstrap(serverUri: string, namespace: string, metadata: Record<string, string>): object {
  return {
    xds_servers: [{ server_uri: serverUri, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
    node: {
      id: `sidecar~127.0.0.1~echo-client.${namespace}~${namespace}.svc.cluster.local`,
      locality: {},
      metadata: { GENERATOR: 'grpc', NAMESPACE: namespace, ...metadata },
    },
  };
}
