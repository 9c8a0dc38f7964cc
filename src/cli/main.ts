#!/usr/bin/env node
import { RelayError } from '../errors.js';
import { runServe } from './serve.js';
import { runSimIstiod } from './sim-istiod.js';
import { runToken } from './token.js';
import { flagHelp } from '../config/help.js';
import { benchAttackSchema, benchCompressionSchema, benchCsrSchema, benchReplicasSchema, benchXdsSchema, serveSchema, simSchema, tokenSchema } from '../config/schema.js';
import type { z } from 'zod';

const commands: Record<string, (argv: string[]) => Promise<void>> = {
  serve: runServe,
  'sim-istiod': runSimIstiod,
  token: runToken,
  // Loaded only when asked for: the bench's modules (load generators, process sampling) are no part
  // of serving, and a minimal image need not carry what they call.
  bench: async (argv) => (await import('./bench.js')).runBench(argv),
};

/** What each command (and bench kind) accepts: its help is generated from this schema. */
const schemas: Record<string, z.ZodType> = {
  serve: serveSchema,
  'sim-istiod': simSchema,
  token: tokenSchema,
  bench: benchXdsSchema,
  'bench xds': benchXdsSchema,
  'bench csr': benchCsrSchema,
  'bench attack': benchAttackSchema,
  'bench compression': benchCompressionSchema,
  'bench replicas': benchReplicasSchema,
};

const usage = `meshrelay — xDS and CA relay for Istio VM sidecars

Usage:
  meshrelay serve [flags]          run the relay
  meshrelay sim-istiod [flags]     run the simulated istiod on its own
  meshrelay token [flags]          print a dev service-account JWT (audience istio-ca) for the dev CA
  meshrelay bench [xds] [flags]    simulated VM Envoys against the relay, the upstream or a raw baseline
  meshrelay bench csr [flags]      CSR/s and latency of local signing
  meshrelay bench attack [flags]   hostile loads against a relay, a healthy VM watched
  meshrelay bench compression      what gzip saves and costs per response on a relay link
  meshrelay bench replicas [flags] relay replicas behind HAProxy, one killed (scripts/bench-real-istiod.sh replicas)
  meshrelay help                   this text
  meshrelay COMMAND --help         the command's flags and their defaults

Every flag can also be set as MESHRELAY_<NAME> in the environment or as a key in a YAML
file given by --config; flags win over the environment, which wins over the file. The README
explains each flag.`;

function commandHelp(name: string): string {
  return `meshrelay ${name} [flags]\n\n${flagHelp(schemas[name]!)}\n`;
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  if (!command || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(`${usage}\n`);
    return;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    const sub = command === 'bench' && rest[0] && !rest[0].startsWith('-') ? `bench ${rest[0]}` : command;
    if (schemas[sub]) {
      process.stdout.write(commandHelp(sub));
      return;
    }
  }
  const run = commands[command];
  if (!run) {
    process.stderr.write(`meshrelay: unknown command "${command}"\n\n${usage}\n`);
    process.exitCode = 2;
    return;
  }
  await run(rest);
}

main().catch((error: unknown) => {
  const message = error instanceof RelayError ? error.message : error instanceof Error ? error.stack ?? error.message : String(error);
  process.stderr.write(`meshrelay: ${message}\n`);
  // Exit status 2: the configuration (flags, files, CA files) is what must change.
  process.exit(error instanceof RelayError && (error.code === 'MR_BAD_CONFIG' || error.code === 'MR_BAD_CA_FILES') ? 2 : 1);
});
