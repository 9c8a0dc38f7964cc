import { writeFileSync } from 'node:fs';
import { runCsrBench } from '../../bench/csr-bench.js';
import { loadConfig } from '../config/load.js';
import { benchCsrSchema } from '../config/schema.js';
import { GrpcStatus, RelayError } from '../errors.js';

const scenarios: Record<string, (argv: string[]) => Promise<void>> = {
  csr: async (argv) => {
    const config = loadConfig(benchCsrSchema, argv);
    const result = await runCsrBench({ concurrency: config.concurrency, seconds: config.seconds, caKeys: config.caKeys, csrKey: config.csrKey, relayCpuProfileDir: config.relayCpuProf });
    process.stdout.write(`${result.report}\n`);
    if (config.json) writeFileSync(config.json, `${JSON.stringify({ endToEnd: result.endToEnd, signing: result.signing }, null, 2)}\n`);
  },
};

/** `meshrelay bench <scenario>`: load tests; `csr` measures the CA (the xDS scenarios are coming). */
export async function runBench(argv: string[]): Promise<void> {
  const [scenario, ...rest] = argv;
  const run = scenario ? scenarios[scenario] : undefined;
  if (!run) throw new RelayError('MR_BAD_CONFIG', GrpcStatus.INVALID_ARGUMENT, `bench needs a scenario: ${Object.keys(scenarios).join(', ')}`);
  await run(rest);
}
