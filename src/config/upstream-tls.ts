import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import { watchFiles } from './file-watch.js';
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

/** The files the credentials for `use` are built from. */
function credentialFiles(config: ServeConfig, use: 'xds' | 'ca'): string[] {
  if (use === 'ca') return config.caUpstreamPlaintext ? [] : [caUpstreamRoot(config)].filter(Boolean);
  return config.upstreamCaFile ? [config.upstreamCaFile, config.upstreamCertFile, config.upstreamKeyFile].filter(Boolean) : [];
}

/**
 * Follows the files upstream credentials come from (a rotated mesh root, a renewed relay
 * certificate): when their contents change, `apply` gets credentials built from the new files, for
 * the connections opened from then on. Files that cannot be read or used are logged and ignored.
 */
export function watchUpstreamCredentials(config: ServeConfig, use: 'xds' | 'ca', log: Logger, apply: (credentials: grpc.ChannelCredentials) => void): { close(): void } {
  const files = credentialFiles(config, use);
  const contents = () => files.map((file) => {
    try {
      return readFileSync(file).toString('base64');
    } catch {
      return '';
    }
  }).join('|');
  let last = contents();
  return watchFiles(files, () => {
    const now = contents();
    if (now === last) return;
    try {
      const credentials = upstreamCredentials(config, use);
      last = now;
      log.info({ files, use }, 'upstream TLS files changed; new connections use them');
      apply(credentials);
    } catch (error) {
      log.error({ err: (error as Error).message, files }, 'upstream TLS files changed but are not usable; keeping the previous ones');
    }
  });
}
