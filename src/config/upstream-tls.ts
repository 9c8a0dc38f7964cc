import * as grpc from '@grpc/grpc-js';
import { readConfiguredFile } from './files.js';
import { caUpstreamRoot, type ServeConfig } from './schema.js';

/**
 * Channel credentials toward istiod. xDS: plaintext without `upstreamCaFile`, else TLS verified
 * against it (with the relay's client certificate when given). The CA forwarder: TLS verified
 * against `caUpstreamCaFile` (default the xDS upstream's root), and never a client certificate:
 * istiod takes the identity from the first authenticator that matches, and a relay certificate
 * would make every VM the relay (docs/CA.md).
 */
export function upstreamCredentials(config: ServeConfig, use: 'xds' | 'ca'): grpc.ChannelCredentials {
  if (use === 'ca') {
    const root = caUpstreamRoot(config);
    if (!root || config.caUpstreamPlaintext) return grpc.credentials.createInsecure();
    return grpc.credentials.createSsl(readConfiguredFile(root, config.caUpstreamCaFile ? 'caUpstreamCaFile' : 'upstreamCaFile'));
  }
  if (!config.upstreamCaFile) return grpc.credentials.createInsecure();
  const withClientCertificate = config.upstreamKeyFile !== '';
  return grpc.credentials.createSsl(
    readConfiguredFile(config.upstreamCaFile, 'upstreamCaFile'),
    withClientCertificate ? readConfiguredFile(config.upstreamKeyFile, 'upstreamKeyFile') : null,
    withClientCertificate && config.upstreamCertFile ? readConfiguredFile(config.upstreamCertFile, 'upstreamCertFile') : null,
  );
}

/**
 * The TLS server name to send and verify, when istiod is reached by an address its certificate
 * does not name (an IP, a load balancer). The CA forwarder's defaults to the xDS upstream's.
 */
export function upstreamChannelOptions(config: ServeConfig, use: 'xds' | 'ca'): grpc.ChannelOptions {
  const name = use === 'ca' ? config.caUpstreamServerName || config.upstreamServerName : config.upstreamServerName;
  return name ? { 'grpc.ssl_target_name_override': name, 'grpc.default_authority': name } : {};
}
