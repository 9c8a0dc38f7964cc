#!/usr/bin/env node
import { RelayError } from '../errors.js';
import { runServe } from './serve.js';
import { runSimIstiod } from './sim-istiod.js';
import { runToken } from './token.js';
import { runBench } from './bench.js';

const commands: Record<string, (argv: string[]) => Promise<void>> = {
  serve: runServe,
  'sim-istiod': runSimIstiod,
  token: runToken,
  bench: runBench,
};

const usage = `meshrelay — xDS and CA relay for Istio VM sidecars

Usage:
  meshrelay serve [flags]        run the relay (see docs/CLI.md or README for flags)
  meshrelay sim-istiod [flags]   run the simulated istiod on its own
  meshrelay token --namespace NS --service-account SA [--ttl-seconds N] [--state-dir DIR]
                                 print a dev service-account JWT (audience istio-ca) for the dev CA
  meshrelay bench csr [--concurrency N] [--seconds S] [--ca-keys rsa-2048,ec-p256] [--json FILE]
                                 CSR/s and latency of local signing, and native vs node-forge signing
  meshrelay help                 this text

Every flag can also be set as MESHRELAY_<NAME> in the environment or as a key in a YAML
file given by --config; flags win over the environment, which wins over the file.`;

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  if (!command || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(`${usage}\n`);
    return;
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
  process.exit(error instanceof RelayError && error.code === 'MR_BAD_CONFIG' ? 2 : 1);
});
