import { loadConfig } from '../config/load.js';
import { serveSchema } from '../config/schema.js';
import { createLogger } from '../log.js';
import { Relay } from '../relay.js';
import { formatAddress } from '../transport/listen-address.js';
import { onTerminate } from './signals.js';

function caLines(relay: Relay): string[] {
  const summary = relay.ca?.summary;
  if (!summary) return ['  CA:                                 off'];
  if (summary.mode === 'forward') return [`  CA:                                 forwarding CreateCertificate to ${summary.upstream}`];
  return [
    `  CA:                                 signing locally; root certificate ${summary.rootCertFile}`,
    ...(summary.tokenIssuer === 'meshrelay-dev'
      ? ['  dev token for a CSR:                npm run -s token -- --namespace vm --service-account vm-sa']
      : []),
  ];
}

export async function runServe(argv: string[]): Promise<void> {
  const config = loadConfig(serveSchema, argv);
  const log = createLogger(config.logLevel);
  const relay = await Relay.start({ config, log });
  const { xds, tls, admin, upstream } = relay.addresses;
  const lines = [
    'meshrelay is serving.',
    xds ? `  xDS (plaintext ADS, SotW + Delta):  ${formatAddress(xds)}` : '',
    tls ? `  xDS (TLS):                          ${formatAddress(tls)}` : '',
    admin ? `  admin:                              http://${formatAddress(admin)}/debug/syncz  /debug/groups  /readyz` : '',
    `  upstream:                           ${upstream}${relay.embedded ? ' (embedded simulated istiod)' : ''} via ${config.upstreamProtocol}, ${config.mode} mode`,
    ...caLines(relay),
    xds ? `Point an ADS client at ${formatAddress(xds)} with Istio VM node metadata (NAMESPACE, SERVICE_ACCOUNT, NETWORK...).` : '',
  ];
  process.stdout.write(`${lines.filter(Boolean).join('\n')}\n`);
  onTerminate(log, config.shutdownGraceSeconds * 1000, () => relay.stop(config.shutdownGraceSeconds * 1000));
}
