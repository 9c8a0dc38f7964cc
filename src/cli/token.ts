import path from 'node:path';
import { ensureDevTokenIssuer, mintDevToken } from '../ca/dev-token-issuer.js';
import { loadConfig } from '../config/load.js';
import { tokenSchema } from '../config/schema.js';

/** Prints a development service-account JWT (audience istio-ca) that `npm start`'s relay accepts. */
export async function runToken(argv: string[]): Promise<void> {
  const config = loadConfig(tokenSchema, argv);
  const issuer = ensureDevTokenIssuer(path.join(config.stateDir, 'token-issuer'));
  process.stdout.write(`${mintDevToken(issuer, config.namespace, config.serviceAccount, config.ttlSeconds)}\n`);
}
