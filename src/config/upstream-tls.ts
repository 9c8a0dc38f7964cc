import * as grpc from '@grpc/grpc-js';
import { readConfiguredFile } from './files.js';
import type { ServeConfig } from './schema.js';

/**
 * Channel credentials toward istiod: plaintext without `upstreamCaFile`, else TLS verified against
 * it. The CA forwarder never sends a client certificate: istiod takes the identity from the first
 * authenticator that matches, and a relay certificate would make every VM the relay (docs/CA.md).
 */
export function upstreamCredentials(config: ServeConfig, use: 'xds' | 'ca'): grpc.ChannelCredentials {
  if (!config.upstreamCaFile) return grpc.credentials.createInsecure();
  const withClientCertificate = use === 'xds' && config.upstreamKeyFile !== '';
  return grpc.credentials.createSsl(
    readConfiguredFile(config.upstreamCaFile, 'upstreamCaFile'),
    withClientCertificate ? readConfiguredFile(config.upstreamKeyFile, 'upstreamKeyFile') : null,
    withClientCertificate && config.upstreamCertFile ? readConfiguredFile(config.upstreamCertFile, 'upstreamCertFile') : null,
  );
}

/** The TLS server name override, when istiod is reached by a name its certificate does not carry. */
export function upstreamChannelOptions(config: ServeConfig): grpc.ChannelOptions {
  return config.upstreamServerName
    ? { 'grpc.ssl_target_name_override': config.upstreamServerName, 'grpc.default_authority': config.upstreamServerName }
    : {};
}
