import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import protobuf from 'protobufjs';

// The Envoy/xDS API protos ship inside @grpc/grpc-js-xds (deps/*); Istio-only protos live in proto/.
const require = createRequire(import.meta.url);
const xdsPackageDir = path.dirname(require.resolve('@grpc/grpc-js-xds/package.json'));
const projectProtoDir = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../../../proto');

// protobufjs ships google/protobuf/descriptor.proto, which the validate/udpa annotations import.
const protobufjsDir = path.dirname(require.resolve('protobufjs/package.json'));

const includeDirs = [
  projectProtoDir,
  ...['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => path.join(xdsPackageDir, 'deps', d)),
  protobufjsDir,
];

const protoFiles = [
  'envoy/service/discovery/v3/discovery.proto',
  'envoy/service/status/v3/csds.proto',
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/endpoint/v3/endpoint.proto',
  'envoy/config/listener/v3/listener.proto',
  'envoy/config/route/v3/route.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto',
  'envoy/extensions/transport_sockets/tls/v3/tls.proto',
  'envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto',
  'google/protobuf/struct.proto',
  'google/rpc/status.proto',
  'istio/v1/auth/ca.proto',
  'istio/networking/nds/v1/nds.proto',
];

function loadRoot(): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    for (const dir of includeDirs) {
      const candidate = path.join(dir, target);
      if (existsSync(candidate)) return candidate;
    }
    return target;
  };
  root.loadSync(protoFiles, { keepCase: true });
  root.resolveAll();
  return root;
}

let cachedRoot: protobuf.Root | undefined;

/** The protobufjs root with every message type the relay, its CA and the simulator encode or decode. */
export function protoRoot(): protobuf.Root {
  cachedRoot ??= loadRoot();
  return cachedRoot;
}

const types = new Map<string, protobuf.Type>();

/** A message type by full name, looked up once: protobufjs's lookup walks namespaces on every call, and requests are decoded per VM. */
export function messageType(fullName: string): protobuf.Type {
  let type = types.get(fullName);
  if (!type) types.set(fullName, type = protoRoot().lookupType(fullName));
  return type;
}
