import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { ServeConfig } from '../../src/config/schema.js';
import { createDevCa, type CaKeyType } from '../../src/ca/dev-ca.js';
import { DEV_ISSUER, ensureDevTokenIssuer, mintDevToken, type DevTokenIssuer } from '../../src/ca/dev-token-issuer.js';
import { startRelay, startSim } from './harness.js';

export interface CaRig {
  relay: Awaited<ReturnType<typeof startRelay>>;
  client: grpc.Client;
  caDir: string;
  rootFile: string;
  issuer: DevTokenIssuer;
  token(namespace?: string, serviceAccount?: string, ttlSeconds?: number): string;
  bearer(namespace?: string, serviceAccount?: string): Record<string, string>;
  close(): Promise<void>;
}

/** A relay signing locally with a fresh CA of the given key type, and a dev token issuer it trusts. */
export async function caRig(keyType: CaKeyType = 'ec-p256', overrides: Partial<ServeConfig> = {}): Promise<CaRig> {
  const base = mkdtempSync(path.join(tmpdir(), 'meshrelay-ca-'));
  const caDir = path.join(base, 'cacerts');
  createDevCa(caDir, { keyType });
  const issuer = ensureDevTokenIssuer(path.join(base, 'issuer'));
  const sim = await startSim();
  const relay = await startRelay({
    upstream: sim.target, caMode: 'local', caDir, jwksFile: issuer.jwksFile, jwtIssuers: [DEV_ISSUER], stateDir: base, ...overrides,
  }).catch(async (error: unknown) => {
    await sim.close();
    throw error;
  });
  const client = new grpc.Client(relay.target, grpc.credentials.createInsecure());
  const token = (namespace = 'vm', serviceAccount = 'vm-sa', ttlSeconds = 600) => mintDevToken(issuer, namespace, serviceAccount, ttlSeconds);
  return {
    relay, client, caDir, issuer, token,
    rootFile: path.join(caDir, 'root-cert.pem'),
    bearer: (namespace, serviceAccount) => ({ authorization: `Bearer ${token(namespace, serviceAccount)}` }),
    close: async () => {
      client.close();
      await relay.stop();
      await sim.close();
    },
  };
}
